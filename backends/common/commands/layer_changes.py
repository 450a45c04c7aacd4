"""A layer's configuration, and changes to it: run a changed copy alone, or keep the change."""
from backends.common.commands import Call, command
from kdiff.protocol import vocabulary as v


@command("layer_config")
def layer_config(call: Call) -> None:
    call.reply({"config": call.worker.layer_config(call.args["layer"])})


@command("run_layer_changed")
def run_layer_changed(call: Call) -> None:
    outputs = call.worker.run_layer_changed(call.args["layer"], call.numbered(), call.args.get("overrides") or {},
                                            call.args.get("training"), _weights(call))
    call.reply({}, v.pack(outputs))


@command("change_layer")
def change_layer(call: Call) -> None:
    call.worker.change_layer(call.args["layer"], call.args.get("overrides") or {}, call.args.get("training"),
                             _weights(call))
    call.reply()


def _weights(call: Call):
    """The weights the changed layer is to hold, sent as WEIGHTS (None: the layer's own)."""
    return call.numbered(v.WEIGHTS) if call.args.get("with_weights") else None
