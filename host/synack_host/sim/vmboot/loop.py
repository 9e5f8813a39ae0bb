# MicroPython source: the request loop that ends every VM bootstrap (engine_wasm,
# engine_unix). Runs in the VM, not on the host.
def _setup():
    os_extra, mods = _setup_engine()
    mods['os'] = _Mod('os', _os, ilistdir=_ilistdir, sync=lambda: None, uname=_uname,
        dupterm=lambda *a: None, **os_extra)
    mods['machine'] = _Mod('machine', _machine, UART=UART, Pin=Pin, RTC=RTC,
        reset=lambda: _h('reset'), soft_reset=lambda: _h('soft_reset'),
        unique_id=lambda: b'\x24\x0a\xc4\x00\x5a\x4b', freq=lambda *a: 160000000,
        reset_cause=lambda: 1, PWRON_RESET=1, HARD_RESET=2, SOFT_RESET=5,
        disable_irq=lambda: 0, enable_irq=lambda s=0: None)
    mods['network'] = _Mod('network', None, WLAN=WLAN, STA_IF=0, AP_IF=1, STAT_GOT_IP=1010,
        hostname=lambda *a: 'synack')
    # stdin of running code and what a received 0x03 is: the board's (sim/stdin.py)
    mods['sys'] = _Mod('sys', sys, stdin=_stdin)
    mods['select'] = _Mod('select', _select, poll=_Poll)
    mods['micropython'] = _Mod('micropython', micropython, kbd_intr=_kbd_intr)
    for n in mods:
        sys.modules[n] = sys.modules['u' + n] = mods[n]
    sys.path[:] = ['', '.frozen', '/lib']  # as a board's: .frozen holds the port's ssl
def _run(g, job):
    kind, name, src, more = job
    try:
        while more:
            part, more = _h('more')
            src += part
        if kind == 'K':
            raise KeyboardInterrupt
        if kind == 'F':
            with open('/' + name) as f:
                src = f.read()
        exec(compile(src, name, 'single' if kind == '1' else 'exec'), g)
        _h('done', '')
    except SystemExit:
        _h('done', None if kind != 'F' else '')
    except BaseException as e:
        b = io.StringIO()
        sys.print_exception(e, b)
        _h('done', b.getvalue())
def _loop(g):
    while True:
        _collect()
        _run(g, _h('next'))
_setup()
_g = {'__name__': '__main__'}
while True:
    try:
        _loop(_g)
    except BaseException:
        pass
