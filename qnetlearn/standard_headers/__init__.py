"""Constants that the device models and the guest drivers both use, as QEMU and Linux both
include the same headers (QEMU's include/standard-headers/linux/): the specifications'
numbers, written once.  Sharing them is not a meeting point between ``hw`` and ``guest``:
they still touch only at RAM, MMIO, configuration space and interrupts."""
