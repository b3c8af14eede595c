"""The render worker (real robosuite, real worker process): frames rendered from recorded states equal what
`SimEnv` itself renders from the same state, pixel for pixel (tolerance 0), even when several threads ask at
once, which is what Streamlit's reruns do. Issue 13: frame 0 was noise, frames rendered off the GL thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from curation_app.render_worker import RenderError, SimStateRenderer, get_service

from app_testlib import REF_FRAMES, lift_recording, render_service  # noqa: F401 (fixture)

CAMERAS = ["agentview_image", "robot0_eye_in_hand_image"]


def test_frames_from_several_threads_equal_simenv_pixel_for_pixel(render_service, lift_recording) -> None:
    rec = lift_recording
    service = get_service()
    assert service.cameras("lift") == CAMERAS
    asks = [0, REF_FRAMES[1], REF_FRAMES[2], 0, REF_FRAMES[2]]  # frame 0 twice, from different threads
    barrier = threading.Barrier(len(asks))
    results: dict[int, dict] = {}
    errors: list[BaseException] = []

    def ask(i: int, frame: int) -> None:
        try:
            barrier.wait(timeout=60)
            results[i] = service.render("lift", rec.model_xml, rec.states[[frame]], CAMERAS)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i, f)) for i, f in enumerate(asks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    for i, frame in enumerate(asks):
        for camera in CAMERAS:
            got, want = results[i][camera][0], rec.refs[frame][camera]
            assert got.shape == want.shape == (84, 84, 3) and got.dtype == np.uint8
            assert np.array_equal(got, want), (frame, camera, int(np.abs(got.astype(int) - want).max()))
    assert results[0]["agentview_image"][0].std() > 10  # a real scene, not a blank frame


def test_background_job_renders_every_frame_in_order_equal_to_simenv(render_service, lift_recording) -> None:
    rec = lift_recording
    service = get_service()
    job = service.job("test-job-agentview", "lift", rec.model_xml, rec.states, "agentview_image")
    deadline = time.monotonic() + 300
    while not job.done and time.monotonic() < deadline:
        job.touch()
        time.sleep(0.1)
    assert job.done and job.error is None and job.done_upto == len(rec.states)
    frames = job.ready()
    for frame in REF_FRAMES:
        assert np.array_equal(frames[frame], rec.refs[frame]["agentview_image"]), frame
    assert service.job("test-job-agentview", "lift", rec.model_xml, rec.states, "agentview_image") is job  # shared


def test_unknown_task_and_camera_are_named(render_service, lift_recording) -> None:
    service = get_service()
    with pytest.raises(RenderError, match="no_such_task"):
        service.render("no_such_task", None, lift_recording.states[:1], CAMERAS)
    with pytest.raises(RenderError, match="frontview_image"):
        service.render("lift", lift_recording.model_xml, lift_recording.states[:1], ["frontview_image"])
    assert service.status()[0] == "ready"  # the worker lives on


def test_in_thread_renderer_refuses_other_threads() -> None:
    renderer = SimStateRenderer()  # nothing is created until the first render
    caught: list[BaseException] = []

    def other() -> None:
        try:
            renderer.render("lift", None, np.zeros((1, 32)), CAMERAS)
        except BaseException as exc:  # noqa: BLE001
            caught.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(timeout=30)
    assert caught and isinstance(caught[0], RuntimeError) and "thread that created it" in str(caught[0])
