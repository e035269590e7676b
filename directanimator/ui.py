"""`directanimator serve`: a web page to animate a photo with a driving video (Gradio).

Optional: `pip install -e ".[ui]"`. The page calls the same `DirectAnimatorPipeline` and the same
cue writer as the CLI; `AnimateService` holds everything the page does, without Gradio, so it is
tested on its own and the page stays a thin layer:

  cues     reference + driving video -> the cue preview and report (`directanimator cues`), so the
           alignment can be checked before spending compute
  animate  -> the mp4, the side-by-side (reference | driving | pose cue | result), the cue report;
           progress is windows done / total; a Stop button cancels between windows

Requests run one at a time (the queue holds the others), each in its own temporary folder under
the server's work folder; the folder is removed when the request's files have been handed to the
page, and the whole work folder when the server stops. Bad input shows the CLI's one-line message in
the page and the server keeps serving. Upload size and video length are limited (`Limits`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


class Cancelled(Exception):
    """The user pressed Stop."""


@dataclass
class Limits:
    max_upload_mb: float = 200.0      # per uploaded file
    max_video_seconds: float = 120.0  # driving video duration
    max_size: int = 1024              # working size in pixels


@dataclass
class RequestResult:
    folder: Path
    files: dict[str, Path]
    report: dict


class AnimateService:
    """The page's work, free of Gradio. One instance per server."""

    def __init__(self, checkpoint: str | None = None, limits: Limits | None = None, workdir: str | Path | None = None,
                 device=None, dtype: str | None = None, memory: str | None = None):
        self.default_checkpoint = checkpoint or None
        # where and how the server's pipelines run (serve --device/--dtype/--memory), as animate's flags
        self.load_options = {k: v for k, v in (("device", device), ("dtype", dtype), ("memory", memory))
                             if v is not None}
        self.limits = limits or Limits()
        self.root = Path(tempfile.mkdtemp(prefix="directanimator-serve-", dir=workdir))
        self._pipelines: dict[str | None, object] = {}
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()  # one animation at a time: a pipeline's scheduler has state
        self._cancelled: set[str] = set()

    # ------------------------------------------------------------------ checks

    def check_files(self, reference: str | None, driving: str | None) -> None:
        """The same wording as the CLI where the CLI has one; limits first (no compute wasted)."""
        from .video import load_image, probe_video

        if not reference:
            raise InputError("no reference photo: upload one (or pick the bundled example)")
        if not driving:
            raise InputError("no driving video: upload one (or pick the bundled example)")
        for path, what in ((reference, "reference photo"), (driving, "driving video")):
            if not Path(path).is_file():
                raise InputError(f"{what} not found: {path}")
            mb = Path(path).stat().st_size / 2**20
            if mb > self.limits.max_upload_mb:
                raise InputError(f"{what} is {mb:.0f} MB; this server takes at most {self.limits.max_upload_mb:g} MB")
        load_image(reference)  # InputError on a file that is not an image
        info = probe_video(driving)  # InputError on a file that is not a video
        if info.fps > 0 and info.num_frames / info.fps > self.limits.max_video_seconds:
            raise InputError(f"driving video is {info.num_frames / info.fps:.0f} s long; this server takes at most "
                             f"{self.limits.max_video_seconds:g} s")

    def check_size(self, size: int | float | None) -> int | None:
        if size in (None, 0, ""):
            return None
        if float(size) != int(size) or not 32 <= int(size) <= self.limits.max_size:
            raise InputError(f"size must be a whole number between 32 and {self.limits.max_size}, got {size}")
        return int(size)

    # ------------------------------------------------------------------ work

    def new_folder(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="request-", dir=self.root))

    def release(self, folder: str | Path | None) -> None:
        """Remove a request's folder (only folders of this server)."""
        if folder and Path(folder).parent == self.root:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def pipeline(self, checkpoint: str | None):
        from .pipeline import DirectAnimatorPipeline

        key = checkpoint or self.default_checkpoint
        with self._lock:
            if key not in self._pipelines:
                self._pipelines[key] = DirectAnimatorPipeline.from_pretrained(key, **self.load_options)
            return self._pipelines[key]

    def cues(self, reference: str, driving: str, size: int | None = None) -> RequestResult:
        from .config import CuesConfig
        from .cues.files import write_cues

        self.check_files(reference, driving)
        size = self.check_size(size) or 256
        folder = self.new_folder()
        try:
            report = write_cues(reference, driving, folder / "cues", CuesConfig(size=size), progress=False)
        except BaseException:
            self.release(folder)
            raise
        files = {name: folder / "cues" / name for name in ("preview.png", "report.json", "pose_cue.mp4",
                                                           "face_cue.mp4", "location_cue.mp4")}
        return RequestResult(folder, files, report.as_dict())

    def cancel(self, token: str) -> None:
        self._cancelled.add(token)

    def animate(self, reference: str, driving: str, checkpoint: str | None = None, steps: int | None = None,
                seed: int | None = None, guidance: float | None = None, size: int | None = None,
                overlap: int | None = None, token: str | None = None, progress=None,
                prompt: str | None = None) -> RequestResult:
        """`progress(done, total, stage)` is called as windows finish; `cancel(token)` stops the
        request between windows. `prompt` (empty: the model's own) describes the person and the scene."""
        import math

        self.check_files(reference, driving)
        size = self.check_size(size)
        steps = None if steps in (None, 0, "") else steps  # 0: the checkpoint's own setting
        if steps is not None and not 1 <= int(steps) <= 1000:
            raise InputError(f"steps must lie between 1 and 1000, got {steps}")
        if guidance is not None and not (math.isfinite(float(guidance)) and 1.0 <= float(guidance) <= 20.0):
            raise InputError(f"guidance must lie between 1 and 20, got {guidance}")
        if overlap is not None and int(overlap) < 0:
            raise InputError(f"window overlap must be at least 0, got {overlap}")
        token = token or uuid.uuid4().hex
        self._cancelled.discard(token)
        pipe = self.pipeline(checkpoint)

        def callback(stage: str, done: int, total: int) -> None:
            if token in self._cancelled:
                raise Cancelled()
            if progress is not None:
                progress(done, total, stage)

        folder = self.new_folder()
        try:
            with self._run_lock:
                result = pipe(reference, driving, folder / "animation.mp4", steps=None if steps is None else int(steps),
                              seed=None if seed is None else int(seed), size=size, guidance_scale=guidance,
                              side_by_side=folder / "side_by_side.mp4", progress=False,
                              window_overlap=None if overlap is None else int(overlap), callback=callback,
                              prompt=(prompt or "").strip() or None)
        except BaseException:
            self.release(folder)
            raise
        finally:
            self._cancelled.discard(token)
        # the output's file name, not its path on the server: a JSON output with a "path" key is taken by
        # gradio_client for a file to download (the server's folder is not served: 403)
        report = {**{k: v for k, v in result.as_dict().items() if k != "path"}, "video": "animation.mp4",
                  "cues": result.cue_report}
        (folder / "report.json").write_text(json.dumps(report, indent=1, default=str))
        return RequestResult(folder, {"animation.mp4": folder / "animation.mp4",
                                      "side_by_side.mp4": folder / "side_by_side.mp4",
                                      "report.json": folder / "report.json"}, report)


def _page_error(exc: BaseException):
    """The CLI's one-line message of an exception, as a Gradio error shown on the page."""
    import gradio as gr

    if isinstance(exc, InputError):
        return gr.Error(f"error: {exc}", print_exception=False)
    if isinstance(exc, Cancelled):
        return gr.Error("stopped: the animation was cancelled", print_exception=False)
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return gr.Error(f"internal error: {first}", print_exception=False)


def _handlers(service: AnimateService):
    """The page's two actions around `service`: (on_cues, on_animate). Their names are the API's."""
    import gradio as gr

    def on_cues(reference, driving, size):
        try:
            res = service.cues(reference, driving, size)
        except Exception as exc:  # noqa: BLE001 - shown in the page, the server keeps serving
            raise _page_error(exc) from None
        summary = {k: res.report[k] for k in ("num_frames", "person_frames", "face_frames", "alignment", "warnings")}
        summary["dropped_frames"] = len(res.report["dropped_frames"])
        for line in res.report["warnings"]:  # the CLI's warning lines, as notices on the page
            gr.Warning(line)
        return str(res.files["preview.png"]), summary, str(res.folder)

    def on_animate(reference, driving, checkpoint, steps, seed, guidance, size, overlap, token, prompt="",
                   progress=gr.Progress()):
        progress(0, desc="cues")

        def report(done, total, stage):
            if stage == "windows":
                progress((done, total), desc="windows", unit="window")
            elif stage == "denoise":
                progress((done, total), desc="denoising (all windows together)", unit="step")

        try:
            res = service.animate(reference, driving, checkpoint=checkpoint or None, steps=steps, seed=seed,
                                  guidance=guidance, size=size, overlap=overlap, token=token, progress=report,
                                  prompt=prompt)
        except Exception as exc:  # noqa: BLE001 - shown in the page, the server keeps serving
            raise _page_error(exc) from None
        for line in res.report["warnings"]:
            gr.Warning(line)
        f = res.files
        return (str(f["animation.mp4"]), str(f["side_by_side.mp4"]), res.report,
                [str(f["animation.mp4"]), str(f["side_by_side.mp4"]), str(f["report.json"])], str(res.folder))

    return on_cues, on_animate


def build_app(service: AnimateService):
    """The Gradio page around `service`."""
    import gradio as gr

    from .assets import ASTRONAUT, WALK_VIDEO

    on_cues, on_animate = _handlers(service)
    with gr.Blocks(title="DirectAnimator", delete_cache=(600, 3600)) as page:
        gr.Markdown("# DirectAnimator\nA reference photo performs the motion of a driving video. Check the cues "
                    "first (are the person and the face found, is the body placed over the reference person?), "
                    "then animate. The embedded demo model knows puppets only; pass `--checkpoint` for a real model.")
        token = gr.State(lambda: uuid.uuid4().hex)
        folder = gr.State(None)
        with gr.Row():
            reference = gr.Image(type="filepath", label="reference photo", elem_id="reference", height=280)
            driving = gr.Video(label="driving video", elem_id="driving", height=280)
        gr.Examples([[str(ASTRONAUT), str(WALK_VIDEO)]], inputs=[reference, driving], label="bundled example")
        with gr.Accordion("settings", open=False):
            with gr.Row():
                checkpoint = gr.Textbox(value=service.default_checkpoint or "", label="checkpoint (empty: embedded)",
                                        elem_id="checkpoint")
                size = gr.Number(value=0, precision=0, label="size in pixels (0: the model's)", elem_id="size")
                steps = gr.Number(value=0, precision=0, label="denoising steps (0: the model's)", elem_id="steps")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, label="seed", elem_id="seed")
                guidance = gr.Number(value=1.0, label="guidance (1: off)", elem_id="guidance")
                overlap = gr.Number(value=5, precision=0, label="window overlap (frames)", elem_id="overlap")
            prompt = gr.Textbox(value="", label="prompt: the person's appearance and the scene (empty: the model's)",
                                elem_id="prompt")
        with gr.Row():
            cues_button = gr.Button("cues", elem_id="cues-button")
            animate_button = gr.Button("animate", variant="primary", elem_id="animate-button")
            stop_button = gr.Button("stop", variant="stop", elem_id="stop-button")
        with gr.Row():
            preview = gr.Image(label="cue preview", elem_id="preview", interactive=False)
            cue_report = gr.JSON(label="cue report", elem_id="cue-report")
        with gr.Row():
            result = gr.Video(label="animation", elem_id="result", interactive=False)
            side = gr.Video(label="reference | driving | pose cue | result", elem_id="side", interactive=False)
        report = gr.JSON(label="report", elem_id="report")
        downloads = gr.File(label="downloads", file_count="multiple", elem_id="downloads", interactive=False)

        cues_event = cues_button.click(on_cues, [reference, driving, size], [preview, cue_report, folder])
        cues_event.then(service.release, folder, None)
        run = animate_button.click(on_animate, [reference, driving, checkpoint, steps, seed, guidance, size, overlap,
                                                token, prompt], [result, side, report, downloads, folder])
        run.then(service.release, folder, None)
        stop_button.click(service.cancel, token, None, cancels=[run], queue=False)
    return page


def serve(checkpoint: str | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          limits: Limits | None = None, block: bool = True, device=None, dtype: str | None = None,
          memory: str | None = None):
    """Start the page; returns (page, service) when `block` is False."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise InputError('the web page needs the ui extra: pip install -e ".[ui]"') from None
    import os

    limits = limits or Limits()
    service = AnimateService(checkpoint, limits, device=device, dtype=dtype, memory=memory)
    # uploads and Gradio's copies of the results live in the server's own folder, removed at the end
    os.environ.setdefault("GRADIO_TEMP_DIR", str(service.root / "gradio"))
    if checkpoint:
        service.pipeline(checkpoint)  # a bad checkpoint is an error now, not on the first request
    page = build_app(service)
    page.queue(default_concurrency_limit=1, max_size=16)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: serving on {host}: reachable from other machines, not only this one")
    try:
        page.launch(server_name=host, server_port=port, max_file_size=f"{limits.max_upload_mb:g}mb",
                    prevent_thread_lock=not block, quiet=not block, footer_links=[])
    except BaseException:
        service.close()
        raise
    if block:
        service.close()
        return None
    return page, service
