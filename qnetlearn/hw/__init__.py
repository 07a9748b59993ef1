"""Device models: what the guest sees as hardware (QEMU's hw/)."""
