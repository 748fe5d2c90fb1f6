"""The protocol core: pure code, no I/O.

Messages (``messages``), their binary encoding (``codec``), the four stream
framings (``framing``), the conversation order (``session``), the
authentication step (``auth``) and the UDP sequencing state machine. Nothing
here imports socket, select, selectors, threading, asyncio, time or subprocess.
"""
