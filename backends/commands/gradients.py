"""Gradients of a loss (a projection of the outputs, or a named loss on labels) with respect to
every layer output and weight."""
from backends.commands import Call, command


@command("backward")
def backward(call: Call) -> None:
    count = 0
    loss = call.args.get("loss")
    targets = call.numbered("y") if loss is not None else None
    for name, output_grads, weight_grads in call.worker.backward(call.numbered("x"), call.numbered("p"), loss, targets):
        parts = {f"o{i}": grad for i, grad in enumerate(output_grads)}
        parts.update({f"w{i}": grad for i, (_, grad) in enumerate(weight_grads)})
        call.part({"layer": name, "weights": [weight for weight, _ in weight_grads]}, parts)
        count += 1
    call.reply({"layers": count})
