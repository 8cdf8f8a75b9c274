"""``latentdiag export``: a trained reference encoder as ONNX, checked against PyTorch."""

from __future__ import annotations

import click

from latentdiag.cli._common import console, echo_json, json_option


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "-o", "--out", required=True, type=click.Path(dir_okay=False), help="The .onnx file to write."
)
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset version.")
@click.option(
    "--ir-version",
    type=int,
    default=8,
    show_default=True,
    help="ONNX IR version (onnxruntime must read it).",
)
@json_option
def export_command(run_dir, out, opset, ir_version, as_json):
    """Export a trained reference encoder to ONNX, checked against PyTorch.

    Inputs x (B, C, S, S float32 in [0, 1], or B, F float32 as stored for a run trained on
    vectors) and, when the encoder is conditional, label (B, int64); outputs mu and logvar;
    dynamic batch. The check runs onnxruntime and PyTorch on held-out images (or rows)
    kept with the run.

    Fails (exit 1, no file) when the largest absolute difference exceeds 1e-4.

    \b
    Examples:
      latentdiag export runs/disentangled -o encoder.onnx
      latentdiag embed encoder.onnx synthetic -o latents.h5
    """
    from reference_models.export import export_encoder

    result = export_encoder(run_dir, out, opset=opset, ir_version=ir_version)
    if as_json:
        echo_json(result)
        return
    console().print(
        f"wrote {result['path']}: inputs {', '.join(result['inputs'])} → outputs mu, logvar "
        f"(opset {result['opset']}, IR {result['ir_version']}, dynamic batch)"
    )
    console().print(
        f"max abs difference vs PyTorch on {result['n_checked']} held-out inputs: "
        f"{result['max_abs_diff']:.3g} (tolerance {result['tolerance']:g})"
    )
