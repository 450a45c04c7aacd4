"""Loading a model, running it forward, and writing it out."""
from backends.common.commands import Call, command
from kdiff.protocol import vocabulary as v


@command("load")
def load(call: Call) -> None:
    call.reply(call.worker.load(**call.args))


@command("forward")
def forward(call: Call) -> None:
    count = 0
    for name, outputs in call.worker.forward(call.numbered()):
        call.part({"layer": name}, v.pack(outputs))
        count += 1
    call.reply({"layers": count})


@command("self_check")
def self_check(call: Call) -> None:
    call.reply({"differing": call.worker.self_check(call.numbered())})


@command("outputs")
def outputs(call: Call) -> None:
    found = call.worker.last_outputs(list(call.args["layers"]))
    counts, arrays = v.pack_by_layer(found)
    call.reply({"counts": counts}, arrays)


@command("save")
def save(call: Call) -> None:
    call.reply({"files": call.worker.save(call.args["directory"])})
