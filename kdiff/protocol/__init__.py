"""The contract between the coordinator and its workers, the only part of ``kdiff`` that
``backends`` imports: how messages are framed (``wire``), what the arrays of each message are
called (``vocabulary``), and which Keras layers a worker can build (``layer_catalog``)."""
