"""The SSE parser shared by mcpedge.verify and the bench's in-target probe."""

from mcpedge.sse import iter_events


def test_events_comments_and_multiline_data():
    lines = [": keep-alive", "", "event: endpoint", "data: /messages?sessionId=1", "",
             "data: {\"a\":", "data:1}", "", "event: ping", "", "id: 7", "data: x", ""]
    assert list(iter_events(lines)) == [("endpoint", "/messages?sessionId=1"), ("message", '{"a":\n1}'),
                                        ("message", "x")]


def test_an_unterminated_event_is_not_yielded():
    assert list(iter_events(["data: half"])) == []
