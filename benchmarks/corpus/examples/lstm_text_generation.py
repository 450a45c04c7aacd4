"""Keras 2.3.1 examples/lstm_text_generation.py, the model as written (the Nietzsche corpus, compile and fit
removed): LSTM(128) over maxlen = 40 one-hot characters, Dense softmax. ``len(chars)`` came from the corpus:
here 57, the size of its character set. MIT licensed, Copyright (c) 2015-2019 François Chollet and the Keras contributors: LICENSE-keras."""


def build(keras, data_format):
    from keras.models import Sequential
    from keras.layers import Dense
    from keras.layers import LSTM

    maxlen = 40
    chars = [chr(c) for c in range(57)]   # the corpus's sorted(list(set(text))), by count

    model = Sequential()
    model.add(LSTM(128, input_shape=(maxlen, len(chars))))
    model.add(Dense(len(chars), activation='softmax'))
    return {"model": model, "sample": "one_hot"}
