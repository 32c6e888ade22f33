"""The web page: drop a video, see the verdict, the faces and why (`make ui`).

    python -m ui.app [--host 127.0.0.1] [--port 7860] [--inference-url http://127.0.0.1:8080]

A Gradio app in front of a running TorchServe (`make serve`). It calls the explanations API
(verdict + Grad-CAM) for one video and the inference API for a batch, with the keys TorchServe
wrote to `key_file.json` read here, on the server side: they never reach the browser. An
expired key is renewed by the client and the request retried once.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import argparse
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from client.report import evidence_record, write_evidence_report
from model.schema import add_arguments, parse_command
from protocol.wire import AGGREGATIONS
from ui import present
from ui.form import (
    FRAMES,
    INTERVAL,
    SERVER_DEFAULT,
    UiConfig,
    failure_message,
    readable_json,
    request_options,
)

GALLERY_COLUMNS = 3


def _not_analysed(message: str) -> tuple:
    """The one-video outputs when there is no report: the message, everything else empty."""
    empty_plot = pd.DataFrame({"time_s": [], "fake_probability": [], "person": []})
    return present.error_markdown(message), "", [], empty_plot, [], "", "", None, {}


def analyse_one(config: UiConfig) -> Callable:
    def analyse(path, mode, amount, aggregation, progress=gr.Progress()):  # noqa: B008
        if not path:
            return _not_analysed("Choose a video first.")
        progress(0.05, desc="Uploading and analysing (a 10 s clip takes a few seconds)")
        options = {**request_options(mode, amount, aggregation), "crops": "true"}
        try:
            report = config.client().explain(Path(path), options)
        except Exception as error:  # failure_message re-raises what it cannot word
            return _not_analysed(failure_message(error, config))
        progress(0.9, desc="Drawing the results and the evidence report")
        return (
            present.verdict_markdown(report),
            present.people_html(report),
            present.gallery(report),
            pd.DataFrame(present.timeline(report)),
            present.explanations(report),
            present.provenance_markdown(report),
            present.model_markdown(report),
            evidence_files(Path(path), report),
            readable_json(report),
        )

    return analyse


def evidence_files(video: Path, report: Mapping[str, Any]) -> list[str]:
    """The evidence report PDF and its JSON record, in a fresh temp folder for the download."""
    folder = Path(tempfile.mkdtemp(prefix="deepfake-report-"))
    pdf = folder / f"{video.name}.pdf"
    sidecar = write_evidence_report(evidence_record(video.name, video.read_bytes(), report), pdf)
    return [str(pdf), str(sidecar)]


def analyse_batch(config: UiConfig) -> Callable:
    def analyse(paths, mode, amount, aggregation, progress=gr.Progress()):  # noqa: B008
        if not paths:
            return pd.DataFrame(columns=present.BATCH_COLUMNS), None
        options = request_options(mode, amount, aggregation)
        client, rows = config.client(), []
        for path in progress.tqdm(paths, desc="Analysing"):
            name = Path(path).name
            try:
                rows.append(present.batch_row(name, client.predict(Path(path), options), None))
            except Exception as error:
                rows.append(present.batch_row(name, None, failure_message(error, config)))
        folder = Path(tempfile.mkdtemp(prefix="deepfake-batch-"))
        csv_path = present.write_csv(rows, folder / "verdicts.csv")
        return pd.DataFrame(rows, columns=present.BATCH_COLUMNS), str(csv_path)

    return analyse


def option_controls() -> tuple[gr.Radio, gr.Number, gr.Dropdown]:
    with gr.Accordion("Options", open=False):
        mode = gr.Radio(
            [SERVER_DEFAULT, FRAMES, INTERVAL],
            value=SERVER_DEFAULT,
            label="Which frames to analyse",
            info="The server's default is its model config's sampling (docs/configuration.md).",
        )
        amount = gr.Number(value=16, precision=0, minimum=1, label="N")
        aggregation = gr.Dropdown(
            [SERVER_DEFAULT, *AGGREGATIONS],
            value=SERVER_DEFAULT,
            label="How face scores become one verdict",
            info="person_max: the most suspicious person (their faces' mean) decides; mean: "
            "the average of all faces; confident: the surest faces count more; face_max: the "
            "single most suspicious face decides.",
        )
    return mode, amount, aggregation


def build_app(config: UiConfig) -> gr.Blocks:
    with gr.Blocks(title="deepfake-serve", analytics_enabled=False) as app:
        gr.Markdown(
            "# Is this video a deepfake?\n"
            "Upload a video: the server finds the faces, scores each one and explains where "
            "it looked. It checks for **face swaps**; read the caveat under the verdict."
        )
        with gr.Tab("One video"):
            with gr.Row():
                with gr.Column(scale=1):
                    video = gr.File(
                        label="Video: drag and drop, or click to choose",
                        file_count="single",
                        type="filepath",
                        elem_id="video-input",
                    )
                    samples = config.sample_videos()
                    if samples:
                        gr.Examples(
                            [[path] for path in samples],
                            inputs=[video],
                            label="Or try a sample video (one click)",
                            examples_per_page=8,
                        )
                    mode, amount, aggregation = option_controls()
                    button = gr.Button("Analyse", variant="primary", elem_id="analyse")
                with gr.Column(scale=2):
                    verdict = gr.Markdown(
                        "Upload a video and press **Analyse**.", elem_id="verdict"
                    )
                    people = gr.HTML(elem_id="people")
                    faces = gr.Gallery(
                        label="Faces, most suspicious first (score · time in the video)",
                        columns=6,
                        height=190,
                        elem_id="faces",
                    )
                    plot = gr.LinePlot(
                        x="time_s",
                        y="fake_probability",
                        y_lim=[0, 1],
                        x_title="time in the video (s)",
                        y_title="fake probability",
                        color="person",
                        label="Fake probability over time, one line per person",
                        elem_id="timeline",
                    )
                    overlays = gr.Gallery(
                        label="Why: where the model saw evidence of a fake in the most "
                        "suspicious faces (Grad-CAM; red = strongest)",
                        columns=GALLERY_COLUMNS,
                        height=320,
                        elem_id="explanations",
                    )
                    provenance = gr.Markdown(elem_id="provenance")
                    model = gr.Markdown(elem_id="model-info")
                    report_files = gr.File(
                        label="Evidence report: the PDF and its JSON record (with its SHA-256)",
                        file_count="multiple",
                        elem_id="evidence-report",
                    )
                    with gr.Accordion("Raw JSON from the server", open=False):
                        raw = gr.JSON(elem_id="raw-json")
            button.click(
                analyse_one(config),
                inputs=[video, mode, amount, aggregation],
                outputs=[
                    verdict,
                    people,
                    faces,
                    plot,
                    overlays,
                    provenance,
                    model,
                    report_files,
                    raw,
                ],
            )
        with gr.Tab("Several videos"):
            videos = gr.File(
                label="Videos: drop several at once",
                file_count="multiple",
                type="filepath",
                elem_id="batch-input",
            )
            batch_mode, batch_amount, batch_aggregation = option_controls()
            batch_button = gr.Button("Analyse all", variant="primary", elem_id="analyse-batch")
            table = gr.Dataframe(
                headers=present.BATCH_COLUMNS, label="Verdicts", elem_id="batch-table"
            )
            download = gr.File(label="Download as CSV", elem_id="batch-csv")
            batch_button.click(
                analyse_batch(config),
                inputs=[videos, batch_mode, batch_amount, batch_aggregation],
                outputs=[table, download],
            )
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, UiConfig)
    config = parse_command(parser, UiConfig, argv)
    app = build_app(config)
    allowed = [str(config.samples)] if config.samples and config.samples.is_dir() else []
    print(f"ui: http://{config.host}:{config.port} -> {config.inference_url}", flush=True)
    app.queue(default_concurrency_limit=2).launch(
        server_name=config.host,
        server_port=config.port,
        max_file_size=config.max_upload_bytes(),
        allowed_paths=allowed,
        show_error=False,
        footer_links=[],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
