"""Gradients of a loss (a projection of the outputs, or a named loss on labels) with respect to
every layer output and weight; and every layer's outputs with them, from one pass."""
from backends.common.commands import Call, command
from kdiff.protocol import vocabulary as v


@command("backward")
def backward(call: Call) -> None:
    count = 0
    for name, output_grads, weight_grads in call.worker.backward(call.numbered(v.MODEL_INPUTS), call.numbered(v.PROJECTIONS),
                                                                 *_loss_and_targets(call)):
        _gradient_part(call, {"layer": name}, output_grads, weight_grads)
        count += 1
    call.reply({"layers": count})


@command("forward_backward")
def forward_backward(call: Call) -> None:
    """forward's parts (kind "output"), then backward's (kind "gradient")."""
    count = 0
    for kind, name, *values in call.worker.forward_backward(call.numbered(v.MODEL_INPUTS), call.numbered(v.PROJECTIONS),
                                                            *_loss_and_targets(call)):
        if kind == "output":
            call.part({"layer": name, "kind": kind}, v.pack(values[0]))
            continue
        _gradient_part(call, {"layer": name, "kind": kind}, *values)
        count += 1
    call.reply({"layers": count})


def _loss_and_targets(call: Call) -> tuple:
    loss = call.args.get("loss")
    return loss, call.numbered(v.LABELS) if loss is not None else None


def _gradient_part(call: Call, header: dict, output_grads: list, weight_grads: list) -> None:
    parts = {**v.pack(output_grads, v.OUTPUT_GRADIENTS), **v.pack([grad for _, grad in weight_grads], v.WEIGHT_GRADIENTS)}
    call.part({**header, "weights": [weight for weight, _ in weight_grads]}, parts)
