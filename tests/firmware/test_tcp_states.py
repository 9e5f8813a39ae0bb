"""TCP lifecycle table: the seed document's sequences, and illegal transitions raise."""

from portable import eq, raises

from synack import tcp

PORTABLE = True


def run(*events):
    c = tcp.Connection()
    for e in events:
        c.fire(e)
    return c


def test_active_close_sequence():
    c = run(tcp.CONNECT, tcp.CONNECTED, tcp.CLOSE, tcp.FIN_ACKED, tcp.PEER_FIN,
            tcp.TIME_WAIT_DONE)
    eq(c.states(), ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2",
                    "TIME_WAIT", "CLOSED"])


def test_passive_close_sequence():
    c = run(tcp.CONNECT, tcp.CONNECTED, tcp.PEER_FIN, tcp.CLOSE, tcp.FIN_ACKED)
    eq(c.states(), ["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"])


def test_simultaneous_close_goes_through_closing():
    c = run(tcp.CONNECT, tcp.CONNECTED, tcp.CLOSE, tcp.PEER_FIN, tcp.FIN_ACKED)
    eq(c.state_name, "TIME_WAIT")
    eq(c.states()[-2:], ["CLOSING", "TIME_WAIT"])


def test_refused_and_timeout():
    eq(run(tcp.CONNECT, tcp.REFUSED).states(), ["CLOSED", "SYN_SENT", "CLOSED"])
    eq(run(tcp.CONNECT, tcp.TIMEOUT).state_name, "CLOSED")
    eq(run(tcp.CONNECT, tcp.CONNECTED, tcp.RESET).state_name, "CLOSED")


def test_complete_active_close_walks_the_states():
    c = run(tcp.CONNECT, tcp.CONNECTED, tcp.CLOSE)
    c.complete_active_close()
    eq(c.states()[-4:], ["FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT", "CLOSED"])


def test_complete_active_close_from_a_simultaneous_close_walks_closing():
    # Both sides sent FIN at once (FIN_WAIT_1 -> CLOSING); the stack then finishes the
    # close without showing the last ACK: CLOSING -> TIME_WAIT -> CLOSED.
    c = run(tcp.CONNECT, tcp.CONNECTED, tcp.CLOSE, tcp.PEER_FIN)
    eq(c.state_name, "CLOSING")
    c.complete_active_close()
    eq(c.state_name, "CLOSED")
    eq(c.states()[-4:], ["FIN_WAIT_1", "CLOSING", "TIME_WAIT", "CLOSED"])
    for events in ((), (tcp.CONNECT, tcp.CONNECTED, tcp.CLOSE, tcp.FIN_ACKED),
                   (tcp.CONNECT, tcp.CONNECTED, tcp.CLOSE, tcp.FIN_ACKED, tcp.PEER_FIN)):
        c = run(*events)
        c.complete_active_close()
        eq(c.state_name, "CLOSED", repr(events))


def test_illegal_transitions_raise():
    c = tcp.Connection()
    e = raises(tcp.TCPStateError, c.fire, tcp.CONNECTED)
    eq(e.state, tcp.CLOSED)
    eq("CONNECTED" in str(e) and "CLOSED" in str(e), True)
    raises(tcp.TCPStateError, c.fire, tcp.RESET)      # nothing to reset when CLOSED
    c = run(tcp.CONNECT, tcp.CONNECTED)
    raises(tcp.TCPStateError, c.fire, tcp.CONNECT)
    raises(tcp.TCPStateError, c.fire, tcp.TIME_WAIT_DONE)
    eq(c.state_name, "ESTABLISHED")  # a refused event changes nothing


def test_every_table_entry_is_reachable_and_named():
    for (state, event), new in tcp.TRANSITIONS.items():
        eq(0 <= state < len(tcp.STATE_NAMES) and 0 <= new < len(tcp.STATE_NAMES), True)
        eq(0 <= event < len(tcp.EVENT_NAMES), True)


def test_log_is_bounded_and_keeps_newest():
    c = tcp.Connection(log_size=4)
    for _ in range(5):
        c.fire(tcp.CONNECT)
        c.fire(tcp.REFUSED)
    h = c.history()
    eq(len(h), 4)
    eq([entry[1] for entry in h], [tcp.CONNECT, tcp.REFUSED, tcp.CONNECT, tcp.REFUSED])
    eq(len(c.format_history()), 4)
    eq(c.format_history()[-1].endswith("REFUSED SYN_SENT -> CLOSED"), True)
