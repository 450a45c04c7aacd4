"""Keras 2.3.1 examples/imdb_cnn_lstm.py, the model and its parameters as written (imdb.load_data, compile
and fit removed): Embedding, Dropout, Conv1D, MaxPooling1D, LSTM (recurrent_activation Keras 2.3's default
'sigmoid', unroll=False: Theano's scan), Dense. MIT licensed, Copyright (c) 2015-2019 François Chollet and the Keras contributors: LICENSE-keras."""


def build(keras, data_format):
    from keras.models import Sequential
    from keras.layers import Dense, Dropout, Activation
    from keras.layers import Embedding
    from keras.layers import LSTM
    from keras.layers import Conv1D, MaxPooling1D

    # Embedding
    max_features = 20000
    maxlen = 100
    embedding_size = 128

    # Convolution
    kernel_size = 5
    filters = 64
    pool_size = 4

    # LSTM
    lstm_output_size = 70

    model = Sequential()
    model.add(Embedding(max_features, embedding_size, input_length=maxlen))
    model.add(Dropout(0.25))
    model.add(Conv1D(filters,
                     kernel_size,
                     padding='valid',
                     activation='relu',
                     strides=1))
    model.add(MaxPooling1D(pool_size=pool_size))
    model.add(LSTM(lstm_output_size))
    model.add(Dense(1))
    model.add(Activation('sigmoid'))
    return {"model": model, "sample": "tokens"}
