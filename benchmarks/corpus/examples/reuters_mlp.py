"""Keras 2.3.1 examples/reuters_mlp.py, the model as written (data loading, Tokenizer, compile and fit removed):
Dense(512) on max_words = 1000 binary word features, ReLU, Dropout, Dense softmax over num_classes = 46 (the
example's np.max(y_train) + 1 on Reuters). MIT licensed, Copyright (c) 2015-2019 François Chollet and the Keras contributors: LICENSE-keras."""


def build(keras, data_format):
    from keras.models import Sequential
    from keras.layers import Dense, Dropout, Activation

    max_words = 1000
    num_classes = 46

    model = Sequential()
    model.add(Dense(512, input_shape=(max_words,)))
    model.add(Activation('relu'))
    model.add(Dropout(0.5))
    model.add(Dense(num_classes))
    model.add(Activation('softmax'))
    return {"model": model, "sample": "binary"}
