"""Read an emorl event directory with TensorBoard's own EventAccumulator and
print what it sees as JSON, so the Rust test can check TensorBoard (not just
our decoder) understands the file. Usage: read_events.py <run_dir>"""

import json
import sys

try:
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )
    from tensorboard.plugins.hparams import metadata as hparams_metadata
except ImportError as exc:  # reported by the Rust test with install hints
    print(f"EMORL_MISSING_TENSORBOARD: {exc}", file=sys.stderr)
    sys.exit(3)


def hparam_value(v):
    kind = v.WhichOneof("kind")
    return None if kind is None else getattr(v, kind)


def main(run_dir):
    # 0 = keep everything (default guidance samples scalars/tensors).
    acc = EventAccumulator(
        run_dir,
        size_guidance={"scalars": 0, "histograms": 0, "tensors": 0},
    )
    acc.Reload()
    tags = acc.Tags()
    out = {
        "file_version": acc.file_version,
        "scalars": {},
        "histograms": {},
        "texts": {},
        "hparams": {},
    }
    for tag in tags["scalars"]:
        out["scalars"][tag] = [[e.step, e.value] for e in acc.Scalars(tag)]
    for tag in tags["histograms"]:
        out["histograms"][tag] = [
            {
                "step": e.step,
                "min": e.histogram_value.min,
                "max": e.histogram_value.max,
                "num": e.histogram_value.num,
                "sum": e.histogram_value.sum,
                "sum_squares": e.histogram_value.sum_squares,
                "bucket": list(e.histogram_value.bucket),
            }
            for e in acc.Histograms(tag)
        ]
    for tag in tags["tensors"]:
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        if plugin != "text":
            continue
        out["texts"][tag] = [
            [e.step, [s.decode("utf-8") for s in e.tensor_proto.string_val]]
            for e in acc.Tensors(tag)
        ]
    # Parse hparams with the plugin's own helpers (they check the version).
    try:
        content = acc.PluginTagToContent("hparams")
    except KeyError:
        content = {}
    if hparams_metadata.EXPERIMENT_TAG in content:
        exp = hparams_metadata.parse_experiment_plugin_data(
            content[hparams_metadata.EXPERIMENT_TAG]
        )
        out["hparams"]["experiment"] = {
            "hparams": [[h.name, h.type] for h in exp.hparam_infos],
            "metrics": [m.name.tag for m in exp.metric_infos],
        }
    if hparams_metadata.SESSION_START_INFO_TAG in content:
        ssi = hparams_metadata.parse_session_start_info_plugin_data(
            content[hparams_metadata.SESSION_START_INFO_TAG]
        )
        out["hparams"]["session_start"] = {
            k: hparam_value(v) for k, v in ssi.hparams.items()
        }
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: read_events.py <run_dir>")
    main(sys.argv[1])
