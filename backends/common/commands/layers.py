"""One layer at a time: its weights, running it alone, and its backward alone."""
from backends.common.commands import Call, command
from kdiff.protocol import vocabulary as v


@command("weights")
def weights(call: Call) -> None:
    named = call.worker.layer_weights(call.args["layer"])
    call.reply({"names": [name for name, _ in named]}, v.pack([value for _, value in named]))


@command("set_weights")
def set_weights(call: Call) -> None:
    call.worker.set_layer_weights(call.args["layer"], call.numbered())
    call.reply()


@command("run_layer")
def run_layer(call: Call) -> None:
    outputs = call.worker.run_layer(call.args["layer"], call.numbered())
    call.reply({}, v.pack(outputs))


@command("layer_backward")
def layer_backward(call: Call) -> None:
    input_grads, weight_grads = call.worker.layer_backward(call.args["layer"], call.numbered(),
                                                           call.numbered(v.OUTPUT_GRADIENTS))
    call.reply({"weights": [name for name, _ in weight_grads]},
               {**v.pack(input_grads, v.INPUT_GRADIENTS), **v.pack([g for _, g in weight_grads], v.WEIGHT_GRADIENTS)})
