"""Server-sent events, parsed line by line (the WHATWG event-stream format).

Pure Python with no imports, so the bench's in-target probe can carry this file
into a target that has no mcp-edge installed.
"""


def iter_events(lines):
    """Yield ``(event, data)`` for each event in ``lines`` (text lines without their
    newline). Comments (keep-alives) and unknown fields are skipped; an event
    without data is dropped, as browsers do."""
    event, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if key == "event":
            event = value
        elif key == "data":
            data.append(value)
