"""A real Linux TAP device for ``-netdev tap,host=kernel`` (QEMU's net/tap-linux.c, net/tap.c).

How QEMU gets its TAP, and this module with it:

1. ``open("/dev/net/tun", O_RDWR)`` gives a file descriptor not yet tied to any device.
2. ``ioctl(TUNSETIFF)`` with a ``struct ifreq`` (interface name, flags) creates the device
   (or attaches to an existing persistent one): ``IFF_TAP`` for Ethernet frames,
   ``IFF_NO_PI`` so no 4-byte packet-information prefix is added, and ``IFF_VNET_HDR``
   (when ``TUNGETFEATURES`` offers it) so every frame crossing the fd starts with a
   virtio_net_hdr (10 bytes, or what ``TUNSETVNETHDRSZ`` sets: 12 when a virtio 1.0 NIC
   asks).  A name with ``%d`` lets the kernel pick the number (QEMU asks for ``tap%d``).
3. The fd is made non-blocking: ``read`` returns one frame or EAGAIN, ``write`` queues one
   frame or fails with EAGAIN, so the main loop never sleeps inside a handler.
4. The ``script=`` (default ``/etc/qemu-ifup``) runs with the interface name as its only
   argument, typically to bring the link up or add it to a bridge; a non-zero exit status
   makes the netdev fail.  ``downscript=`` (default ``/etc/qemu-ifdown``) runs at close.
   ``no`` (or an empty value) disables a script.

The device is not made persistent, so the kernel removes it when the last fd to it closes:
on :meth:`KernelTap.close` and also when the process dies, even by SIGKILL.  Scripts run
without the TAP fd (it is close-on-exec), so a daemon a script leaves behind cannot keep
the device alive (QEMU passes the fd to its scripts; we do not).

Everything here is the standard library: ``os``, ``fcntl.ioctl``, ``struct``, ``subprocess``.
"""
from __future__ import annotations

import errno
import fcntl
import os
import select
import shutil
import struct
import subprocess
__all__ = ["KernelTap", "KernelTapError", "open_kernel_tap", "kernel_tap_available",
           "DEV_TUN", "DEFAULT_SCRIPT", "DEFAULT_DOWNSCRIPT"]

DEV_TUN = "/dev/net/tun"
DEFAULT_SCRIPT = "/etc/qemu-ifup"        # QEMU's DEFAULT_NETWORK_SCRIPT
DEFAULT_DOWNSCRIPT = "/etc/qemu-ifdown"  # QEMU's DEFAULT_NETWORK_DOWN_SCRIPT

# <linux/if_tun.h>: _IOW('T', n, int) = 0x40045400 | n, _IOR('T', n, ...) = 0x80045400 | n
TUNSETIFF = 0x400454CA          # 202
TUNSETPERSIST = 0x400454CB      # 203
TUNGETFEATURES = 0x800454CF     # 207
TUNGETIFF = 0x800454D2          # 210
TUNGETVNETHDRSZ = 0x800454D7    # 215
TUNSETVNETHDRSZ = 0x400454D8    # 216
TUNSETOFFLOAD = 0x400454D0      # 208
IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFNAMSIZ = 16
#: struct ifreq: the name, then the union whose first member here is ifr_flags (40 bytes)
_IFREQ = struct.Struct("16sH22x")
_INT = struct.Struct("i")
#: QEMU's NET_BUFSIZE: room for a 64 KiB GSO frame and its header
READ_SIZE = 4096 + 65536
#: the virtio_net_hdr a TAP with IFF_VNET_HDR uses until TUNSETVNETHDRSZ says otherwise
VNET_HDR_LEN = 10


class KernelTapError(RuntimeError):
    """A real TAP could not be opened or configured; the message says why and what to do."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_


def _onoff(opts: dict[str, str], key: str) -> bool | None:
    v = opts.get(key)
    if v is None or v == "":
        return None
    return v.lower() not in ("off", "no", "false", "0")


def check_ifname(ifname: str) -> None:
    """Linux's rules for an interface name (dev_valid_name), with a plain-words error."""
    why = None
    raw = ifname.encode()
    if not ifname:
        why = "it is empty"
    elif len(raw) >= IFNAMSIZ:
        why = f"it is {len(raw)} bytes long; Linux allows at most {IFNAMSIZ - 1}"
    elif ifname in (".", ".."):
        why = "'.' and '..' are not allowed"
    elif any(c in ifname for c in "/:") or any(c.isspace() for c in ifname):
        why = "it contains '/', ':' or white space"
    elif ifname.count("%") > 1 or ("%" in ifname and "%d" not in ifname):
        why = "the only '%' allowed is one '%d' (the kernel then picks the number)"
    if why is not None:
        raise KernelTapError(f"bad TAP interface name {ifname!r}: {why}; pass ifname= with "
                             "a name such as tap0 or qtap%d", errno.EINVAL)


def _sysfs(ifname: str, attr: str) -> str | None:
    try:
        with open(f"/sys/class/net/{ifname}/{attr}") as f:
            return f.read().strip()
    except OSError:
        return None


def _device_kind(ifname: str) -> str:
    """What an existing interface is, from sysfs (for error messages)."""
    for line in (_sysfs(ifname, "uevent") or "").splitlines():
        if line.startswith("DEVTYPE="):
            return line.split("=", 1)[1]
    if os.path.exists(f"/sys/class/net/{ifname}/bridge"):
        return "bridge"
    kind = _sysfs(ifname, "type")
    return {"1": "Ethernet device", "772": "loopback device"}.get(kind or "", "network device")


def _explain_setiff(ifname: str, err: OSError) -> str:
    """Turn a TUNSETIFF failure into its cause and fix."""
    code = err.errno
    if code == errno.EPERM:
        return (f"not permitted to create TAP device {ifname!r} ({err.strerror}): run as "
                "root or give the process CAP_NET_ADMIN (for example with sudo, or `setcap "
                "cap_net_admin+ep` on the Python interpreter); a persistent TAP made with "
                f"`ip tuntap add dev {ifname} mode tap user $USER` can also be opened by "
                "that user")
    flags = _sysfs(ifname, "tun_flags")
    exists = os.path.exists(f"/sys/class/net/{ifname}")
    if code in (errno.EINVAL, errno.EBUSY) and exists and flags is None:
        return (f"{ifname!r} exists and is not a TAP device (it is a {_device_kind(ifname)}): "
                f"choose another ifname=, or remove it with `ip link del {ifname}` if it is "
                "yours")
    if code in (errno.EINVAL, errno.EBUSY) and flags is not None:
        f = int(flags, 16)
        if f & IFF_TUN and not f & IFF_TAP:
            return (f"{ifname!r} is a TUN (layer 3) device, not a TAP (layer 2): choose "
                    f"another ifname=, or remove it with `ip link del {ifname}`")
        if code == errno.EBUSY:
            return (f"TAP {ifname!r} is already open (by a QEMU, another qnetlearn, or "
                    "another netdev of this machine): close that one, or choose another "
                    "ifname=")
        return (f"the existing TAP {ifname!r} was created with other flags (tun_flags "
                f"{flags}, e.g. multi_queue): remove it with `ip link del {ifname}` or "
                "choose another ifname=")
    if code == errno.EINVAL:
        return (f"the kernel refused the TAP name or flags for {ifname!r} ({err.strerror}): "
                "check ifname= (at most 15 characters, no '/', ':' or spaces)")
    if code == errno.ENFILE:
        return f"the kernel could not create another interface like {ifname!r} ({err.strerror})"
    return f"could not configure {DEV_TUN} ({ifname}): {err.strerror} (errno {code})"


def _open_dev_tun() -> int:
    try:
        return os.open(DEV_TUN, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KernelTapError(
            f"{DEV_TUN} does not exist, so no TAP can be made: load the tun module "
            "(`modprobe tun`); in a container, create the node (`mkdir -p /dev/net && "
            "mknod /dev/net/tun c 10 200`) or run it with --device /dev/net/tun",
            errno.ENOENT) from None
    except (PermissionError, OSError) as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            raise KernelTapError(
                f"permission denied opening {DEV_TUN}: run as root or give the process "
                "CAP_NET_ADMIN (with read-write access to the node)", e.errno) from None
        if e.errno in (errno.ENODEV, errno.ENXIO):
            raise KernelTapError(f"{DEV_TUN} exists but no driver answers it: load the tun "
                                 "module (`modprobe tun`)", e.errno) from None
        raise KernelTapError(f"could not open {DEV_TUN}: {e.strerror}", e.errno) from None


def _script(opts: dict[str, str], key: str, default: str) -> str | None:
    """The script to run, or None when disabled (``no`` or empty)."""
    path = opts.get(key, default)
    if path in ("", "no"):
        return None
    return path


def _check_script(path: str, key: str) -> None:
    if not os.path.exists(path):
        default = " (QEMU's default)" if path in (DEFAULT_SCRIPT, DEFAULT_DOWNSCRIPT) else ""
        raise KernelTapError(f"network {key} {path}{default} does not exist: create it (it "
                             "gets the interface name as $1), or pass "
                             f"{key}=no", errno.ENOENT)
    if not os.access(path, os.X_OK):
        raise KernelTapError(f"network {key} {path} is not executable: `chmod +x {path}`, or "
                             f"pass {key}=no", errno.EACCES)


def launch_script(path: str, ifname: str) -> None:
    """Run a network script as QEMU's launch_script does: ``path ifname``, wait, check."""
    try:
        proc = subprocess.run([path, ifname], stdin=subprocess.DEVNULL, close_fds=True)
    except OSError as e:
        raise KernelTapError(f"could not run network script {path}: {e.strerror}",
                             e.errno) from None
    if proc.returncode != 0:
        raise KernelTapError(f"network script {path} {ifname} failed with status "
                             f"{proc.returncode}", None)


class KernelTap:
    """An open Linux TAP device: the fd QEMU's main loop polls, read and written per frame.

    The same interface as the simulated :class:`~qnetlearn.net.tap.SimTap`: ``read()``
    returns one frame (with its virtio_net_hdr when ``vnet_hdr_sz`` is not 0) or None on
    EAGAIN, ``write()`` the number of bytes taken or None on EAGAIN (the net layer then
    queues the frame and waits for the fd to be writable).
    """

    def __init__(self, fd: int, ifname: str, vnet_hdr_sz: int, downscript: str | None,
                 created: bool) -> None:
        self.fd = fd
        self.ifname = ifname
        self._vnet_hdr_sz = vnet_hdr_sz
        self.has_vnet_hdr = vnet_hdr_sz != 0
        self.downscript = downscript
        self.created = created          # False when we attached to an existing persistent TAP
        self.closed = False
        self.downscript_error: str | None = None
        self.stats: dict[str, int] = {}

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd {self.fd}"
        return f"<KernelTap {self.ifname} {state} vnet_hdr_sz={self._vnet_hdr_sz}>"

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    def fileno(self) -> int:
        return self.fd

    @property
    def vnet_hdr_sz(self) -> int:
        """Size of the virtio_net_hdr on every frame crossing the fd (0: none)."""
        return self._vnet_hdr_sz

    @vnet_hdr_sz.setter
    def vnet_hdr_sz(self, n: int) -> None:
        """TUNSETVNETHDRSZ: what virtio-net asks for (12 with VERSION_1 or MRG_RXBUF)."""
        if n == self._vnet_hdr_sz:
            return
        if not self.has_vnet_hdr:
            raise KernelTapError(f"TAP {self.ifname} was opened without IFF_VNET_HDR; it "
                                 "cannot carry a virtio_net_hdr", errno.EINVAL)
        try:
            fcntl.ioctl(self.fd, TUNSETVNETHDRSZ, _INT.pack(n))
        except OSError as e:
            raise KernelTapError(f"TUNSETVNETHDRSZ {n} on {self.ifname}: {e.strerror}",
                                 e.errno) from None
        self._vnet_hdr_sz = n

    def set_offload(self, offload: int) -> bool:
        """TUNSETOFFLOAD (TUN_F_* bits): which checksum-partial and unsegmented frames the
        kernel may hand us; False if it refuses (or the fd is no TAP)."""
        try:
            fcntl.ioctl(self.fd, TUNSETOFFLOAD, offload)
        except OSError:
            return False
        return True

    def kernel_vnet_hdr_sz(self) -> int:
        """TUNGETVNETHDRSZ: the header size the kernel uses now."""
        buf = bytearray(_INT.size)
        fcntl.ioctl(self.fd, TUNGETVNETHDRSZ, buf)
        return _INT.unpack(buf)[0]

    def tun_flags(self) -> int:
        """TUNGETIFF: the flags the device was set up with (IFF_TAP | IFF_NO_PI | ...)."""
        buf = bytearray(_IFREQ.size)
        fcntl.ioctl(self.fd, TUNGETIFF, buf)
        return _IFREQ.unpack(buf)[1]

    # -- the fd as the main loop sees it -------------------------------------------------
    def read(self) -> bytes | None:
        """One frame the host kernel sent into the TAP, or None (EAGAIN: nothing now)."""
        try:
            return os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return None
        except OSError as e:
            self._count(f"read error: {errno.errorcode.get(e.errno or 0, e.errno)}")
            return None

    def write(self, data: bytes) -> int | None:
        """Hand one frame (with its header) to the host kernel; None on EAGAIN, <0 on error."""
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            self._count("write EAGAIN")
            return None
        except OSError as e:
            self._count(f"write error: {errno.errorcode.get(e.errno or 0, e.errno)}")
            return -1

    def _poll(self, event: int) -> bool:
        if self.closed:
            return False
        p = select.poll()
        p.register(self.fd, event)
        return bool(p.poll(0))

    def readable(self) -> bool:
        return self._poll(select.POLLIN)

    def writable(self) -> bool:
        return self._poll(select.POLLOUT)

    # -- closing -------------------------------------------------------------------------
    def close(self) -> None:
        """Run the downscript (the device still exists then), then close the fd: a TAP we
        created disappears.  Calling it twice is harmless; a failing downscript is only
        reported (in ``downscript_error``), as QEMU only reports it."""
        if self.closed:
            return
        if self.downscript is not None:
            try:
                launch_script(self.downscript, self.ifname)
            except KernelTapError as e:
                self.downscript_error = str(e)
        self.closed = True
        try:
            os.close(self.fd)
        except OSError:
            pass

    def __enter__(self) -> "KernelTap":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:   # a forgotten TAP still goes away (no downscript then)
        if not getattr(self, "closed", True):
            self.closed = True
            try:
                os.close(self.fd)
            except OSError:
                pass


def open_kernel_tap(ifname: str, opts: dict[str, str] | None = None) -> KernelTap:
    """Open (create) the TAP ``ifname`` as QEMU's tap_open and net_init_tap do.

    ``opts`` are the ``-netdev tap`` options: ``vnet_hdr=on|off`` (unset: use it if the
    kernel offers it; ``on``: fail if it does not), ``script=``, ``downscript=``.
    Raises :class:`KernelTapError` naming the cause and the fix.
    """
    opts = dict(opts or {})
    check_ifname(ifname)
    script = _script(opts, "script", DEFAULT_SCRIPT)
    downscript = _script(opts, "downscript", DEFAULT_DOWNSCRIPT)
    if script is not None:
        _check_script(script, "script")
    if downscript is not None:
        _check_script(downscript, "downscript")
    want_vnet = _onoff(opts, "vnet_hdr")
    fd = _open_dev_tun()
    try:
        flags = IFF_TAP | IFF_NO_PI
        if want_vnet is not False:
            buf = bytearray(_INT.size)
            try:
                fcntl.ioctl(fd, TUNGETFEATURES, buf)
                features = _INT.unpack(buf)[0] & 0xFFFFFFFF
            except OSError:
                features = 0
            if features & IFF_VNET_HDR:
                flags |= IFF_VNET_HDR
            elif want_vnet:
                raise KernelTapError("vnet_hdr=on, but this kernel's TUN driver does not "
                                     "offer IFF_VNET_HDR: pass vnet_hdr=off (or leave it "
                                     "unset)", errno.EINVAL)
        created = "%" in ifname or not os.path.exists(f"/sys/class/net/{ifname}")
        try:
            res = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(ifname.encode(), flags))
        except OSError as e:
            raise KernelTapError(_explain_setiff(ifname, e), e.errno) from None
        name = _IFREQ.unpack(res)[0].split(b"\0", 1)[0].decode()
        vnet = 0
        if flags & IFF_VNET_HDR:
            fcntl.ioctl(fd, TUNSETVNETHDRSZ, _INT.pack(VNET_HDR_LEN))
            vnet = VNET_HDR_LEN
        tap = KernelTap(fd, name, vnet, downscript, created)
    except BaseException:
        os.close(fd)
        raise
    if script is not None:
        try:
            launch_script(script, name)
        except BaseException:
            tap.downscript = None     # QEMU does not run the downscript after a failed up
            tap.close()
            raise
    return tap


def _has_cap_net_admin() -> bool:
    """Is CAP_NET_ADMIN (bit 12) in this process's effective capabilities?"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> 12 & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def kernel_tap_available() -> tuple[bool, str]:
    """Can this process run a real TAP lesson?  ``(ok, what is there or what is missing)``.

    Checks CAP_NET_ADMIN (root), ``/dev/net/tun`` and the ``ip`` command; a lesson shows a
    recorded run instead when ``ok`` is False, with the message saying what it would need.
    """
    missing: list[str] = []
    root = os.geteuid() == 0 if hasattr(os, "geteuid") else False
    if not (root or _has_cap_net_admin()):
        missing.append("root or CAP_NET_ADMIN (start Jupyter with sudo, or in a VM/container "
                       "where you are root)")
    if not os.path.exists(DEV_TUN):
        missing.append(f"{DEV_TUN} (`modprobe tun`)")
    elif not os.access(DEV_TUN, os.R_OK | os.W_OK):
        missing.append(f"read-write access to {DEV_TUN}")
    if shutil.which("ip") is None:
        missing.append("the `ip` command (Debian: `apt-get install iproute2`)")
    if missing:
        return False, ("a real TAP needs " + "; ".join(missing) +
                       ". Showing a recorded run instead.")
    return True, f"ready: {'root' if root else 'CAP_NET_ADMIN'}, {DEV_TUN} and `ip` are there"

