"""``finegrain export RUN --format onnx|torchscript``: a deployable file, checked against PyTorch."""

from __future__ import annotations

from finegrain.commands._common import add_run_argument


def register(sub) -> None:
    p = sub.add_parser("export", help="export a trained classifier to ONNX or TorchScript (with a parity check)")
    add_run_argument(p)
    out = p.add_argument_group("output")
    out.add_argument("--format", dest="export_format", choices=("onnx", "torchscript"), default="onnx",
                     help="file format of the exported model")
    out.add_argument("--out", metavar="FILE", help="output file (default: beside the checkpoint, .onnx or .pt)")
    p.set_defaults(func=run)


def run(args) -> int:
    from finegrain.export import export_checkpoint

    result = export_checkpoint(args.checkpoint, args.export_format, args.out)
    pre = result.metadata["preprocessing"]
    print(f"exported {result.format}: {result.path}")
    print(f"parity vs PyTorch on random input: max |diff| {result.max_abs_diff:.2e} <= {result.tolerance:.2e}")
    print(f"metadata: {len(result.metadata['class_names'])} class names, image {pre['image_size']} px, "
          f"crop ratio {pre['crop_ratio']}, mean {pre['mean']}, std {pre['std']}")
    return 0
