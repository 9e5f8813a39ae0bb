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


def test_next_state_and_accepts_tell_without_changing_anything():
    c = run(tcp.CONNECT)
    eq((c.next_state(tcp.CONNECTED), c.accepts(tcp.CONNECTED)), (tcp.ESTABLISHED, True))
    eq((c.next_state(tcp.TIMEOUT), c.accepts(tcp.RESET)), (tcp.CLOSED, True))
    eq((c.next_state(tcp.PEER_FIN), c.accepts(tcp.PEER_FIN)), (-1, False))
    eq(c.state_name, "SYN_SENT")
    eq(len(c.history()), 1)
    c = tcp.Connection()
    eq((c.next_state(tcp.RESET), c.accepts(tcp.TIMEOUT)), (-1, False))  # nothing to close
    eq((c.accepts(tcp.CONNECT), c.accepts(tcp.CONNECTED)), (True, False))


def test_state_error_names_the_event_and_the_state():
    c = run(tcp.CONNECT, tcp.CONNECTED)
    e = raises(tcp.TCPStateError, c.fire, tcp.TIME_WAIT_DONE)
    eq(str(e), "TCP event TIME_WAIT_DONE is illegal in state ESTABLISHED")
    eq((e.state, e.event), (tcp.ESTABLISHED, tcp.TIME_WAIT_DONE))


def test_notes_are_logged_without_changing_the_state():
    c = tcp.Connection()
    c.note(tcp.BEARER_FAILED)
    c.note(tcp.BEARER_UP)
    c.fire(tcp.CONNECT)
    c.note(tcp.BEARER_UP)
    c.fire(tcp.CONNECTED)
    eq(c.state_name, "ESTABLISHED")
    eq(c.notes(), [tcp.BEARER_FAILED, tcp.BEARER_UP, tcp.BEARER_UP])
    eq(c.states(), ["CLOSED", "SYN_SENT", "ESTABLISHED"])  # notes are not states
    eq([entry[1:] for entry in c.history()],
       [(tcp.BEARER_FAILED, tcp.CLOSED, tcp.CLOSED), (tcp.BEARER_UP, tcp.CLOSED, tcp.CLOSED),
        (tcp.CONNECT, tcp.CLOSED, tcp.SYN_SENT),
        (tcp.BEARER_UP, tcp.SYN_SENT, tcp.SYN_SENT),
        (tcp.CONNECTED, tcp.SYN_SENT, tcp.ESTABLISHED)])
    lines = [line.split(" ", 1) for line in c.format_history()]
    eq([rest for _, rest in lines],
       ["BEARER_FAILED (in CLOSED)", "BEARER_UP (in CLOSED)", "CONNECT CLOSED -> SYN_SENT",
        "BEARER_UP (in SYN_SENT)", "CONNECTED SYN_SENT -> ESTABLISHED"])
    eq([str(int(t)) == t for t, _ in lines], [True] * 5)  # each line starts with its ticks


def test_a_transition_event_is_not_a_note():
    c = run(tcp.CONNECT)
    for event in (tcp.CONNECT, tcp.CONNECTED, tcp.TIMEOUT):
        e = raises(tcp.TCPStateError, c.note, event)
        eq((e.state, e.event), (tcp.SYN_SENT, event))
    eq((c.state_name, len(c.history()), c.notes()), ("SYN_SENT", 1, []))


def test_last_event_is_the_latest_transition_not_a_note():
    c = tcp.Connection()
    eq(c.last_event(), -1)
    c.note(tcp.BEARER_UP)
    eq(c.last_event(), -1)
    c.fire(tcp.CONNECT)
    c.fire(tcp.TIMEOUT)
    c.note(tcp.BEARER_UP)
    c.note(tcp.BEARER_FAILED)
    eq((c.state_name, c.last_event()), ("CLOSED", tcp.TIMEOUT))


def test_a_full_log_keeps_every_entry_once():
    c = tcp.Connection(log_size=3)
    c.fire(tcp.CONNECT)
    c.note(tcp.BEARER_UP)
    c.fire(tcp.CONNECTED)
    eq([entry[1] for entry in c.history()], [tcp.CONNECT, tcp.BEARER_UP, tcp.CONNECTED])
    c.note(tcp.BEARER_FAILED)  # wraps: the oldest entry goes
    eq([entry[1] for entry in c.history()], [tcp.BEARER_UP, tcp.CONNECTED, tcp.BEARER_FAILED])
    eq(c.notes(), [tcp.BEARER_UP, tcp.BEARER_FAILED])
    eq(c.states(), ["SYN_SENT", "ESTABLISHED"])
