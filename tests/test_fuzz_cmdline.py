"""Hostile command lines (issue 11, item 4): whatever a user types, ``parse_cmdline`` and
``Machine.from_cmdline`` raise nothing but ``CmdlineError``, and its message names the
option.  ``tests/test_cmdline.py`` has the readable cases and milder random lines; here the
mutations are nastier: unicode (including digits Python's ``int`` would take), huge and
negative numbers, empty values, runs of commas, quotes, NULs and newlines, options and
arguments swapped or cut, and every line that does parse is built into a machine, booted
and run."""
from __future__ import annotations

import shlex

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qnetlearn as qn
from qnetlearn.system.vl import CmdlineError, parse_cmdline

SEED = ("-machine pc-i440fx-2.3,accel=kvm,usb=off "
        "-netdev tap,id=hn0,script=/etc/qemu-ifup,downscript=/etc/qemu-ifdown "
        "-device virtio-net-pci,id=net-pci0,netdev=hn0 -vnc :7 -m 2048 -smp 2 "
        "-device piix3-usb-uhci -device usb-tablet -monitor stdio")
HUB = ("-net nic,model=e1000,vlan=0 -net tap,vlan=0,ifname=tap0 -net nic,model=virtio,vlan=1,"
       "macaddr=52:54:00:12:34:99,vectors=3 -net tap,vlan=1 "
       "-netdev hubport,id=p0,hubid=2 -device e1000,netdev=p0,addr=5 -nic tap,model=e1000")
LINES = [shlex.split(SEED), shlex.split(HUB),
         shlex.split("-netdev tap,id=a,vnet_hdr=off -device virtio-net-pci,netdev=a,"
                     "rx_queue_size=512,mrg_rxbuf=off,event_idx=off,indirect_desc=on,"
                     "mac=52:54:00:ab:cd:ef -m size=64M -accel tcg")]
NUMBERS = ["0", "-0", "-1", "1", "4", "7", "255", "256", "1023", "1024", "2048", "2049",
           "65535", "65536", "0x7fffffff", "0x80000000", "4294967295", "4294967296",
           "18446744073709551615", "18446744073709551616", "9" * 40, "0x" + "f" * 40, "1e9",
           "1.5", "+3", "0b101", "0o17", "3k", "2G", "4097M", "1T", "16E", "٣", "１２", "³",
           "nan", "inf", ""]
WEIRD = ["", ",", ",,", ",,,,", "=", "==", "=,", ",=", "\0", "\n", "\t", " ", "'", '"', "\\",
         "{", "}", "[]", "{}", "null", "ß", "é", "ǅ", "İ", "\u200b", "\ufeff", "🦆", "٠",
         "-", "--", "help", "?", "on", "off", "auto", "yes", "no"]
OPTIONS = ["-netdev", "-device", "-net", "-nic", "-m", "-smp", "-machine", "-M", "-accel",
           "-enable-kvm", "-monitor", "-qmp", "-nodefaults", "--netdev", "---netdev", "-"]
KEYS = ["id", "type", "netdev", "mac", "macaddr", "model", "addr", "vlan", "hubid", "ifname",
        "vectors", "rx_queue_size", "tx_queue_size", "x-txburst", "event_idx", "mrg_rxbuf",
        "indirect_desc", "size", "maxmem", "slots", "accel", "cpus", "vnet_hdr", "host", ""]


@st.composite
def nasty_value(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.sampled_from(NUMBERS))
    if kind == 1:
        return draw(st.sampled_from(WEIRD))
    if kind == 2:
        return draw(st.text(max_size=8))                 # any unicode at all
    return draw(st.sampled_from(KEYS))


@st.composite
def mutated(draw: st.DrawFn) -> list[str]:
    words = list(draw(st.sampled_from(LINES)))
    for _ in range(draw(st.integers(1, 6))):
        if not words:
            words = [draw(st.sampled_from(OPTIONS))]
        i = draw(st.integers(0, len(words) - 1))
        w = words[i]
        op = draw(st.integers(0, 9))
        if op == 0:                                      # a value replaced
            if "=" in w:
                parts = w.split(",")
                j = draw(st.integers(0, len(parts) - 1))
                key = parts[j].split("=", 1)[0]
                parts[j] = f"{key}={draw(nasty_value())}"
                words[i] = ",".join(parts)
            else:
                words[i] = draw(nasty_value())
        elif op == 1:                                    # a key=value added
            words[i] = f"{w},{draw(st.sampled_from(KEYS))}={draw(nasty_value())}"
        elif op == 2:                                    # option and argument swapped
            if i + 1 < len(words):
                words[i], words[i + 1] = words[i + 1], words[i]
        elif op == 3:                                    # commas repeated
            words[i] = w.replace(",", "," * draw(st.integers(2, 5)))
        elif op == 4:                                    # cut anywhere
            words[i] = w[:draw(st.integers(0, len(w)))]
        elif op == 5:                                    # a word dropped or doubled
            if draw(st.booleans()):
                del words[i]
            else:
                words.insert(i, w)
        elif op == 6:                                    # unicode / control inserted
            k = draw(st.integers(0, len(w)))
            words[i] = w[:k] + draw(st.sampled_from(WEIRD[10:]) | st.text(max_size=2)) + w[k:]
        elif op == 7:                                    # a new option
            words[i:i] = [draw(st.sampled_from(OPTIONS)), draw(nasty_value())]
        elif op == 8:                                    # a number anywhere
            words[i] = w + draw(st.sampled_from(NUMBERS))
        else:                                            # an empty argument
            words.insert(i, "")
    return words


#: lines of options, nasty values and key=value words in any order
RANDOM_WORDS = st.lists(st.one_of(st.sampled_from(OPTIONS), nasty_value(),
                                  st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS),
                                            nasty_value())), max_size=10)


def names_the_option(e: CmdlineError, words: list[str]) -> bool:
    """The message starts with the option it is about, and that option is in the line."""
    if not e.option or not str(e).startswith(e.option):
        return False
    line = " ".join(words)
    head = e.option.split(" ", 1)[0]
    return e.option in line or head in words or head.lstrip("-") in \
        {w.lstrip("-") for w in words}


def build(words: list[str] | str) -> str:
    """Parse; what parses is built, booted and run without a guest.  Returns who refused
    the line ("parser", "machine") or "ran"."""
    try:
        cfg = parse_cmdline(words)
    except CmdlineError as e:
        if isinstance(words, list):
            assert names_the_option(e, words), f"{e.option!r}: {e}"
        assert e.reason
        return "parser"
    try:
        vm = qn.Machine(cfg, guest=None)
    except CmdlineError as e:                  # what only the machine can refuse (-m 1T)
        assert e.option and e.reason and str(e).startswith(e.option)
        return "machine"
    vm.boot()
    vm.run(max_events=10_000)
    vm.close()
    return "ran"


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(mutated())
def test_mutated_lines(words: list[str]) -> None:
    build(words)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(RANDOM_WORDS)
def test_random_words(words: list[str]) -> None:
    build(words)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.text(max_size=120))
def test_random_text(text: str) -> None:
    build(text)


@pytest.mark.parametrize("line", [
    "-m 1T", "-m 4097", "-m 4G,slots=2,maxmem=8G",
    "-device virtio-net-pci,vectors=0", "-device virtio-net-pci,vectors=99999",
    "-net nic,model=virtio,vectors=0", "-net nic,model=virtio,vectors=2049",
])
def test_lines_that_used_to_escape_as_other_exceptions(line: str) -> None:
    """Found by this file: they parsed, then building the machine raised ValueError (RAM
    over the APIC window) or struct.error (an MSI-X capability of 0 or 99999 entries)."""
    with pytest.raises(CmdlineError) as ei:
        qn.Machine.from_cmdline(line, guest=None)
    assert ei.value.option in line and ei.value.reason


@pytest.mark.parametrize("line", ["-m 4064", "-device virtio-net-pci,vectors=1",
                                  "-device virtio-net-pci,vectors=2048"])
def test_limits_themselves_are_fine(line: str) -> None:
    vm = qn.Machine.from_cmdline(line, guest=None)
    vm.boot()
    vm.run()
