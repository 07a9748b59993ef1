"""Split-ring descriptor layout and flags, notification flags, ring feature bits (virtio
1.x §2.7)."""
import struct

#: struct vring_desc: addr, len, flags, next (virtio 1.x §2.7.5)
VRING_DESC = struct.Struct("<QIHH")

VRING_DESC_F_NEXT = 1
VRING_AVAIL_F_NO_INTERRUPT = 1
VRING_USED_F_NO_NOTIFY = 1
VRING_DESC_F_WRITE = 2
VRING_DESC_F_INDIRECT = 4
VIRTIO_RING_F_INDIRECT_DESC = 28
VIRTIO_RING_F_EVENT_IDX = 29
