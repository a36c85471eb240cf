"""streams.app.keep_buffered_events_on_resume: a resume while flowing keeps the stream buffers."""

from __future__ import annotations

from types import SimpleNamespace

from mode.utils.queues import FlowControlEvent, FlowControlQueue

from streams.app import keep_buffered_events_on_resume


def test_resume_while_flowing_keeps_buffered_events() -> None:
    flow_control = FlowControlEvent()  # initially suspended, as Faust's
    keep_buffered_events_on_resume(SimpleNamespace(flow_control=flow_control))  # type: ignore[arg-type]
    buffer: FlowControlQueue[int] = FlowControlQueue(flow_control=flow_control, clear_on_resume=True)

    buffer.put_nowait(1)
    flow_control.resume()  # after a suspension: cleared, as Faust wants
    assert flow_control.is_active() and buffer.qsize() == 0

    buffer.put_nowait(2)  # fetched while flowing (recovery's perform_seek)
    flow_control.resume()  # Recovery.on_recovery_completed: must not drop it
    assert buffer.get_nowait() == 2

    buffer.put_nowait(3)
    flow_control.suspend()  # a revocation: Faust clears explicitly
    flow_control.clear()
    assert buffer.qsize() == 0
    buffer.put_nowait(4)
    flow_control.resume()
    assert flow_control.is_active() and buffer.qsize() == 0
