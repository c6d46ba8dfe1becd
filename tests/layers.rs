//! The layers of text, tabular and recommender models: small text classifiers (Embedding → Conv1D →
//! GlobalMaxPooling1D, and Embedding → LSTM) trained on every device, and each new layer's shapes,
//! masks, state and config round trip.

use kiln::device::device_test;
use kiln::prelude::*;

const STEPS: usize = 10;
const VOCABULARY: usize = 16;
const KEYWORD: u32 = 7;

/// Token sequences (ids 1..16, some sequences padded with 0 at the end) labelled 1 when the keyword
/// occurs: a task a convolution or an LSTM solves by spotting one token anywhere.
fn keyword_data(samples: usize, seed: u64) -> Dataset {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let (mut ids, mut labels) = (Vec::new(), Vec::new());
    for i in 0..samples {
        let length = STEPS - next(4) as usize;
        let mut row: Vec<u32> = (0..STEPS)
            .map(|t| {
                if t < length {
                    1 + next(VOCABULARY as u64 - 1) as u32
                } else {
                    0
                }
            })
            .map(|id| if id == KEYWORD { 8 } else { id })
            .collect();
        let positive = i % 2 == 0;
        if positive {
            row[next(length as u64) as usize] = KEYWORD;
        }
        ids.extend(row);
        labels.push(f32::from(u8::from(positive)));
    }
    let targets = Targets::Values {
        values: labels,
        width: 1,
    };
    Dataset::from_columns(vec![Column::ids(ids, [STEPS])], targets).unwrap()
}

fn train_text_model(model: Sequential, epochs: usize) -> f32 {
    let mut model = model;
    model
        .compile(
            Adam::new(0.01),
            Loss::BinaryCrossentropy,
            &[Metric::Accuracy],
        )
        .unwrap();
    let (train, test) = (keyword_data(256, 1), keyword_data(128, 2));
    let config = FitConfig {
        epochs,
        batch_size: 32,
        verbose: false,
        ..Default::default()
    };
    model.fit(&train, &config).unwrap();
    model
        .evaluate(&test, 128)
        .unwrap()
        .metric(Metric::Accuracy)
        .unwrap()
}

device_test!(a_conv1d_text_classifier_learns_a_keyword, |device| {
    let model = Sequential::new([STEPS])
        .on(&device)
        .seed(3)
        .add(Embedding::new(VOCABULARY, 8))
        .unwrap()
        .add(Conv1D::new(16, 3).activation(Activation::Relu))
        .unwrap()
        .add(GlobalMaxPooling1D::new())
        .unwrap()
        .add(Dense::new(1).activation(Activation::Sigmoid))
        .unwrap();
    let accuracy = train_text_model(model, 8);
    assert!(accuracy >= 0.95, "test accuracy {accuracy}");
});

device_test!(an_lstm_text_classifier_learns_a_keyword, |device| {
    let model = Sequential::new([STEPS])
        .on(&device)
        .seed(3)
        .add(Embedding::new(VOCABULARY, 8))
        .unwrap()
        .add(LSTM::new(12))
        .unwrap()
        .add(Dense::new(1).activation(Activation::Sigmoid))
        .unwrap();
    let accuracy = train_text_model(model, 10);
    assert!(accuracy >= 0.9, "test accuracy {accuracy}");
});

fn output_dims(model: &Sequential, input: &[usize]) -> Vec<usize> {
    model
        .predict(&Tensor::ones(input.to_vec(), &Device::cpu()).unwrap())
        .unwrap()
        .dims()
        .to_vec()
}

#[test]
fn sequence_layers_give_keras_shapes() {
    // (layer, sample shape, output shape for a batch of 2)
    type Case = (Box<dyn Layer>, Vec<usize>, Vec<usize>);
    let cases: Vec<Case> = vec![
        (Box::new(Conv1D::new(5, 3)), vec![9, 4], vec![2, 7, 5]),
        (
            Box::new(Conv1D::new(5, 3).padding(Padding::Same).strides(2)),
            vec![9, 4],
            vec![2, 5, 5],
        ),
        (
            Box::new(GlobalAveragePooling1D::new()),
            vec![9, 4],
            vec![2, 4],
        ),
        (Box::new(GlobalMaxPooling1D::new()), vec![9, 4], vec![2, 4]),
        (
            Box::new(GlobalAveragePooling2D::new()),
            vec![3, 5, 5],
            vec![2, 3],
        ),
        (Box::new(LSTM::new(6)), vec![9, 4], vec![2, 6]),
        (
            Box::new(GRU::new(6).return_sequences(true)),
            vec![9, 4],
            vec![2, 9, 6],
        ),
        (
            Box::new(LayerNormalization::new()),
            vec![9, 4],
            vec![2, 9, 4],
        ),
        (
            Box::new(BatchNormalization::new()),
            vec![9, 4],
            vec![2, 9, 4],
        ),
        (
            Box::new(MultiHeadAttention::new(2)),
            vec![9, 4],
            vec![2, 9, 4],
        ),
        (
            Box::new(TransformerEncoder::new(2, 8)),
            vec![9, 4],
            vec![2, 9, 4],
        ),
        (Box::new(Dense::new(3)), vec![9, 4], vec![2, 9, 3]),
        (Box::new(Reshape::new([36])), vec![9, 4], vec![2, 36]),
        (Box::new(Permute::new([2, 1])), vec![9, 4], vec![2, 4, 9]),
    ];
    for (layer, input, want) in cases {
        let kind = layer.kind();
        let model = Sequential::new(input.clone())
            .on(&Device::cpu())
            .add_boxed(layer)
            .unwrap();
        let mut batch = vec![2];
        batch.extend(&input);
        assert_eq!(output_dims(&model, &batch), want, "{kind}");
    }
}

#[test]
fn bad_shapes_are_errors_naming_the_layer() {
    let cpu = Device::cpu();
    let err = |layer: Box<dyn Layer>, input: &[usize]| {
        Sequential::new(input.to_vec())
            .on(&cpu)
            .add_boxed(layer)
            .err()
            .expect("an error")
            .to_string()
    };
    assert!(err(Box::new(LSTM::new(4)), &[10]).contains("[steps, features]"));
    assert!(err(Box::new(MultiHeadAttention::new(3)), &[5, 4]).contains("3 heads"));
    assert!(err(Box::new(Conv1D::new(4, 9)), &[5, 4]).contains("does not fit"));
    assert!(err(Box::new(Reshape::new([7])), &[2, 3]).contains("cannot reshape"));
    assert!(err(Box::new(Permute::new([1, 1])), &[2, 3]).contains("Permute"));
    assert!(err(Box::new(Dense::new(2)), &[1, 4, 4]).contains("Flatten"));
}

#[test]
fn batch_normalization_keeps_moving_statistics_for_inference() {
    let cpu = Device::cpu();
    let mut model = Sequential::new([3])
        .on(&cpu)
        .add(BatchNormalization::new().momentum(0.0))
        .unwrap();
    model
        .compile(Sgd::new(0.0), Loss::MeanSquaredError, &[])
        .unwrap();
    let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let x = Tensor::from_slice(&x, [4, 3], &cpu).unwrap();
    let zeros = Tensor::zeros([4, 3], &cpu).unwrap();
    model.train_on_batch(&x, &zeros).unwrap();
    // momentum 0: the moving statistics are the last batch's (unbiased variance, as PyTorch).
    let out = model.predict(&x).unwrap().to_vec::<f32>().unwrap();
    let column: Vec<f32> = out.iter().step_by(3).copied().collect();
    // column 0 is 0, 3, 6, 9: mean 4.5, unbiased variance 15.
    for (got, value) in column.iter().zip([0.0f32, 3.0, 6.0, 9.0]) {
        let want = (value - 4.5) / (15.0f32 + 1e-3).sqrt();
        assert!((got - want).abs() < 1e-4, "{column:?}");
    }
}

#[test]
fn new_layers_round_trip_through_their_config() {
    let cpu = Device::cpu();
    let model = Sequential::new([STEPS])
        .on(&cpu)
        .add(Embedding::new(VOCABULARY, 8))
        .unwrap()
        .add(
            Conv1D::new(4, 3)
                .padding(Padding::Same)
                .kernel_initializer(Initializer::HeNormal),
        )
        .unwrap()
        .add(BatchNormalization::new())
        .unwrap()
        .add(GRU::new(4).return_sequences(true))
        .unwrap()
        .add(TransformerEncoder::new(2, 8))
        .unwrap()
        .add(LayerNormalization::new())
        .unwrap()
        .add(GlobalAveragePooling1D::new())
        .unwrap()
        .add(Dense::new(2).activation(Activation::Gelu))
        .unwrap();
    let config = model.config();
    let rebuilt = Sequential::from_config(&config, &cpu).unwrap();
    assert_eq!(rebuilt.config(), config);
}

#[test]
fn orthogonal_initialisation_gives_orthonormal_columns() {
    let cpu = Device::cpu();
    let w = Initializer::Orthogonal
        .init(&[12, 4], (4, 12), 5, &cpu)
        .unwrap()
        .tensor();
    let gram = w.t().unwrap().matmul(&w).unwrap().to_vec::<f32>().unwrap();
    for (i, g) in gram.iter().enumerate() {
        let want = if i % 5 == 0 { 1.0 } else { 0.0 };
        assert!((g - want).abs() < 1e-4, "{gram:?}");
    }
}

#[test]
fn masked_steps_do_not_change_an_lstm_state_or_a_pooled_mean() {
    let cpu = Device::cpu();
    let mut lstm = LSTM::new(3);
    lstm.build("lstm", &[4, 2], &cpu, 1).unwrap();
    let x = Tensor::rand([1, 4, 2], 3, &cpu).unwrap();
    let mask = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0], [1, 4], &cpu).unwrap();
    let masked = lstm.forward_masked(&x, Some(&mask), false).unwrap();
    let short = lstm.forward(&x.narrow(1, 0, 2).unwrap(), false).unwrap();
    let (a, b) = (
        masked.to_vec::<f32>().unwrap(),
        short.to_vec::<f32>().unwrap(),
    );
    assert!(
        a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-6),
        "{a:?} vs {b:?}"
    );
    let pooled = GlobalAveragePooling1D::new()
        .forward_masked(&x, Some(&mask), false)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let first_two = x
        .narrow(1, 0, 2)
        .unwrap()
        .mean(1, false)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(
        pooled
            .iter()
            .zip(&first_two)
            .all(|(a, b)| (a - b).abs() < 1e-6)
    );
}

/// A one-weight linear model on two samples: the fitted value is the weighted mean of the targets,
/// so sample weights and class weights move it where Keras's would.
#[test]
fn sample_and_class_weights_scale_each_samples_loss() {
    let cpu = Device::cpu();
    let fit_value = |data: &Dataset, class_weight: Option<Vec<f32>>| -> f32 {
        let mut model = Sequential::new([1])
            .on(&cpu)
            .add(Dense::new(1).kernel_initializer(Initializer::Zeros))
            .unwrap();
        model
            .compile(Sgd::new(0.2), Loss::MeanSquaredError, &[])
            .unwrap();
        let config = FitConfig {
            epochs: 200,
            batch_size: 2,
            verbose: false,
            shuffle: None,
            class_weight,
            ..Default::default()
        };
        model.fit(data, &config).unwrap();
        model
            .predict(&Tensor::zeros([1, 1], &cpu).unwrap())
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    // inputs 0 (so only the bias learns), targets 0 and 1: the bias ends at the weighted mean
    let data = || {
        Dataset::new(
            vec![0.0, 0.0],
            [1],
            Targets::Values {
                values: vec![0.0, 1.0],
                width: 1,
            },
        )
        .unwrap()
    };
    assert!((fit_value(&data(), None) - 0.5).abs() < 1e-3);
    let weighted = data().with_sample_weights(vec![1.0, 3.0]).unwrap();
    assert!((fit_value(&weighted, None) - 0.75).abs() < 1e-3);
    assert!((fit_value(&data(), Some(vec![3.0, 1.0])) - 0.25).abs() < 1e-3);
    assert!(data().with_sample_weights(vec![1.0]).is_err());
    assert!(data().with_sample_weights(vec![1.0, f32::NAN]).is_err());
}

#[test]
fn reduce_lr_on_plateau_follows_keras() {
    use kiln::nn::callbacks::EpochLogs;
    let cpu = Device::cpu();
    let mut model = Sequential::new([1]).on(&cpu).add(Dense::new(1)).unwrap();
    model
        .compile(Sgd::new(1.0), Loss::MeanSquaredError, &[])
        .unwrap();
    let mut callback = ReduceLROnPlateau::new(Monitor::Loss)
        .factor(0.5)
        .patience(2)
        .cooldown(1)
        .min_lr(0.2);
    let mut rates = Vec::new();
    // the loss improves once, then stalls
    for (epoch, loss) in [1.0f32, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
        .into_iter()
        .enumerate()
    {
        let train = Evaluation {
            loss,
            outputs: Vec::new(),
            metrics: Vec::new(),
        };
        let logs = EpochLogs {
            train: &train,
            validation: None,
        };
        callback.on_epoch_end(epoch, &logs, &mut model).unwrap();
        rates.push(model.learning_rate().unwrap());
    }
    // no improvement at epochs 2, 3 -> halve; epoch 4 ends the cooldown and counts (as in Keras);
    // 4, 5 -> halve; 6, 7 -> halve, floored at min_lr
    assert_eq!(rates, vec![1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.2]);
}

#[test]
fn ids_outside_the_embedding_are_refused_before_training() {
    let cpu = Device::cpu();
    let mut model = Sequential::new([3])
        .on(&cpu)
        .add(Embedding::new(5, 2))
        .unwrap()
        .add(Flatten::new())
        .unwrap()
        .add(Dense::new(1))
        .unwrap();
    model
        .compile(Adam::new(0.01), Loss::MeanSquaredError, &[])
        .unwrap();
    let data = Dataset::from_columns(
        vec![Column::ids(vec![0, 1, 2, 3, 4, 7], [3])],
        Targets::Values {
            values: vec![0.0, 1.0],
            width: 1,
        },
    )
    .unwrap();
    let err = model
        .fit(&data, &FitConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("id 7") && err.contains("Embedding::new(8"),
        "{err}"
    );
    let err = model.evaluate(&data, 2).unwrap_err().to_string();
    assert!(err.contains("id 7"), "{err}");
}

/// Back-propagation through time with a padding mask, against finite differences: every output
/// (the sequence, the last states) feeds the loss, so every gradient path of the recurrence counts.
#[test]
fn masked_recurrent_gradients_match_finite_differences() {
    let cpu = Device::cpu();
    let value =
        |shape: &[usize], seed| Tensor::uniform(shape.to_vec(), -0.8, 0.8, seed, &cpu).unwrap();
    let mask =
        Tensor::from_slice(&[1.0f32, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0], [2, 4], &cpu).unwrap();
    for (gates, lstm) in [(4, true), (3, false)] {
        let inputs = [
            value(&[2, 4, 3], 1),
            value(&[gates * 2, 3], 2),
            value(&[gates * 2, 2], 3),
            value(&[gates * 2], 4),
            value(&[gates * 2], 5),
        ];
        let loss = |t: &[Tensor]| {
            let weights = RecurrentWeights {
                w_ih: &t[1],
                w_hh: &t[2],
                b_ih: Some(&t[3]),
                b_hh: Some(&t[4]),
            };
            let out = if lstm {
                t[0].lstm(&weights, Some(&mask))?
            } else {
                t[0].gru(&weights, Some(&mask))?
            };
            let mut total = out
                .sequence
                .mul(&out.sequence)?
                .sum_all()?
                .add(&out.last_h.sum_all()?)?;
            if let Some(c) = out.last_c {
                total = total.add(&c.mul_scalar(0.5)?.sum_all()?)?;
            }
            Ok(total)
        };
        let report = check_gradients(loss, &inputs, 1e-3, 2e-3).unwrap();
        assert!(report.passed(), "lstm {lstm}: {report:?}");
    }
}

/// `evaluate` reports the new metrics by name, computed over the whole data set (the AUC of a model
/// that ranks by one feature is that feature's AUC).
#[test]
fn evaluate_reports_metrics_by_name() {
    let cpu = Device::cpu();
    let xs = vec![0.1f32, 0.4, 0.35, 0.8, 0.7, 0.2];
    let labels = vec![0.0f32, 0.0, 1.0, 1.0, 1.0, 0.0];
    let data = Dataset::new(
        xs.clone(),
        [1],
        Targets::Values {
            values: labels.clone(),
            width: 1,
        },
    )
    .unwrap();
    let mut model = Sequential::new([1])
        .on(&cpu)
        .add(Dense::new(1).activation(Activation::Sigmoid))
        .unwrap();
    model
        .set_weight(
            "dense.weight",
            &RawTensor::from_slice(&[5.0f32], [1, 1], &cpu).unwrap(),
        )
        .unwrap();
    let metrics = [
        Metric::Auc,
        Metric::PrAuc,
        Metric::F1,
        Metric::RecallAt(0.9),
    ];
    model
        .compile(Sgd::new(0.0), Loss::BinaryCrossentropy, &metrics)
        .unwrap();
    let result = model.evaluate(&data, 2).unwrap();
    let ids: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    let want_auc = kiln::nn::metrics::roc_auc(&xs, &ids).unwrap() as f32;
    assert!(
        (result.get("auc").unwrap() - want_auc).abs() < 1e-6,
        "{result:?}"
    );
    assert!(result.get("pr_auc").is_some() && result.get("f1_score").is_some());
    // sigmoid(5x) > 0.9 only for x > 0.44: 0.8 and 0.7, two of three positives
    assert!(
        (result.get("recall").unwrap() - 2.0 / 3.0).abs() < 1e-6,
        "{result:?}"
    );
    assert!(result.get("loss").is_some() && result.get("nope").is_none());
}

device_test!(adagrad_steps_follow_the_formula, |device| {
    let param = RawTensor::from_slice(&[0.5f32, -1.0], [2], &device).unwrap();
    let grad = RawTensor::from_slice(&[0.2f32, 0.4], [2], &device).unwrap();
    let sum = RawTensor::full([2], 0.1, DType::F32, &device).unwrap();
    let (p, s) = RawTensor::adagrad_step(&param, &grad, &sum, 0.1, 1e-7).unwrap();
    let (p, s) = (p.to_vec::<f32>().unwrap(), s.to_vec::<f32>().unwrap());
    for (i, (x, g)) in [(0.5f32, 0.2f32), (-1.0, 0.4)].into_iter().enumerate() {
        let acc = 0.1 + g * g;
        assert!((s[i] - acc).abs() < 1e-6);
        assert!(
            (p[i] - (x - 0.1 * g / (acc.sqrt() + 1e-7))).abs() < 1e-6,
            "{p:?}"
        );
    }
});

#[test]
fn review_regressions_are_errors() {
    let cpu = Device::cpu();
    // `same` padding with an even kernel would lose a step: refused, as Conv2D does
    let err = Sequential::new([9, 4])
        .on(&cpu)
        .add(Conv1D::new(4, 4).padding(Padding::Same))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("odd kernel"), "{err}");
    // validation_split 1.0 leaves nothing to train on
    let mut model = Sequential::new([1]).on(&cpu).add(Dense::new(1)).unwrap();
    model
        .compile(Sgd::new(0.1), Loss::MeanSquaredError, &[])
        .unwrap();
    let data = Dataset::new(
        vec![0.0, 1.0],
        [1],
        Targets::Values {
            values: vec![0.0, 1.0],
            width: 1,
        },
    )
    .unwrap();
    let config = FitConfig {
        validation_split: 1.0,
        verbose: false,
        ..Default::default()
    };
    assert!(
        model
            .fit(&data, &config)
            .unwrap_err()
            .to_string()
            .contains("validation_split")
    );
    // one class weight for 0/1 targets
    let config = FitConfig {
        class_weight: Some(vec![1.0]),
        verbose: false,
        ..Default::default()
    };
    assert!(
        model
            .fit(&data, &config)
            .unwrap_err()
            .to_string()
            .contains("class_weight")
    );
}

#[test]
fn monitors_treat_errors_as_lower_is_better() {
    use kiln::nn::callbacks::EpochLogs;
    let cpu = Device::cpu();
    let mut model = Sequential::new([1]).on(&cpu).add(Dense::new(1)).unwrap();
    model
        .compile(
            Sgd::new(1.0),
            Loss::MeanSquaredError,
            &[Metric::MeanAbsoluteError],
        )
        .unwrap();
    let mut callback = ReduceLROnPlateau::new(Monitor::Metric(Metric::MeanAbsoluteError))
        .factor(0.5)
        .patience(1);
    // the error falls every epoch: an improvement each time, so the rate stays
    for (epoch, mae) in [0.9f32, 0.5, 0.3].into_iter().enumerate() {
        let train = Evaluation {
            loss: 1.0,
            outputs: Vec::new(),
            metrics: vec![(Metric::MeanAbsoluteError, mae)],
        };
        let logs = EpochLogs {
            train: &train,
            validation: None,
        };
        callback.on_epoch_end(epoch, &logs, &mut model).unwrap();
    }
    assert_eq!(model.learning_rate().unwrap(), 1.0);
}

device_test!(
    a_diverging_fit_stops_with_finite_weights_restored,
    |device| {
        let mut model = Sequential::new([2]).on(&device).add(Dense::new(1)).unwrap();
        // a learning rate that overflows the weights within a few steps
        model
            .compile(Sgd::new(1e18), Loss::MeanSquaredError, &[])
            .unwrap();
        let xs: Vec<f32> = (0..64).map(|i| (i % 7) as f32).collect();
        let ys: Vec<f32> = (0..32).map(|i| (i % 5) as f32).collect();
        let data = Dataset::new(
            xs,
            [2],
            Targets::Values {
                values: ys,
                width: 1,
            },
        )
        .unwrap();
        let config = FitConfig {
            epochs: 3,
            batch_size: 4,
            verbose: false,
            shuffle: None,
            ..Default::default()
        };
        let err = model.fit(&data, &config).unwrap_err().to_string();
        assert!(
            err.contains("the loss became") && err.contains("are back to"),
            "{err}"
        );
        for (name, var) in model.named_parameters() {
            let values = var.tensor().to_vec::<f32>().unwrap();
            assert!(values.iter().all(|v| v.is_finite()), "{name}: {values:?}");
        }
    }
);

/// Every tensor and the step count of a saved optimizer state.
fn optimizer_state(dir: &std::path::Path) -> (Option<String>, Vec<(String, Vec<u8>)>) {
    let bytes = std::fs::read(dir.join("optimizer.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let steps = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("steps").cloned());
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect();
    tensors.sort();
    (steps, tensors)
}

device_test!(
    a_diverging_fit_keeps_the_good_steps_before_the_bad_batch,
    |device| {
        // Step by step the weights overflow; on every device the run stops at the first batch
        // whose loss is not finite and keeps the updates of the batches before it — weights and
        // optimizer state (on a GPU the device-side step guard holds every later update without a
        // host sync, and the step count is rewound).
        let xs: Vec<f32> = (0..64).map(|i| (i % 7) as f32 + 1.0).collect();
        let ys: Vec<f32> = (0..32).map(|i| (i % 5) as f32).collect();
        let data = |n: usize| {
            Dataset::new(
                xs[..2 * n].to_vec(),
                [2],
                Targets::Values {
                    values: ys[..n].to_vec(),
                    width: 1,
                },
            )
            .unwrap()
        };
        let config = FitConfig {
            epochs: 1,
            batch_size: 4,
            verbose: false,
            shuffle: None,
            ..Default::default()
        };
        let dir = std::env::temp_dir().join(format!(
            "kiln-diverge-{}-{}",
            std::process::id(),
            device.is_gpu()
        ));
        for adam in [false, true] {
            let model = || {
                kiln::nn::functional::set_random_seed(3);
                let mut model = Sequential::new([2]).on(&device).add(Dense::new(1)).unwrap();
                if adam {
                    model
                        .compile(Adam::new(3e18), Loss::MeanSquaredError, &[])
                        .unwrap();
                } else {
                    model
                        .compile(Sgd::new(3e4), Loss::MeanSquaredError, &[])
                        .unwrap();
                }
                model
            };
            let mut diverging = model();
            let err = diverging.fit(&data(32), &config).unwrap_err().to_string();
            let batch: usize = err
                .split("batch ")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|b| b.parse().ok())
                .unwrap_or_else(|| panic!("no batch in {err:?}"));
            assert!(
                batch > 1,
                "adam {adam}: diverged at once, the test needs good steps first: {err}"
            );
            // The same model trained on exactly the batches before the bad one.
            let mut good = model();
            good.fit(&data(4 * (batch - 1)), &config).unwrap();
            for ((name, got), (_, want)) in diverging
                .named_parameters()
                .iter()
                .zip(good.named_parameters())
            {
                let got = got.tensor().to_vec::<f32>().unwrap();
                let want = want.tensor().to_vec::<f32>().unwrap();
                assert_eq!(
                    got, want,
                    "adam {adam}: {name} after the refused batch {batch}"
                );
            }
            diverging.save(&dir.join("diverging")).unwrap();
            good.save(&dir.join("good")).unwrap();
            assert_eq!(
                optimizer_state(&dir.join("diverging")),
                optimizer_state(&dir.join("good")),
                "adam {adam}: optimizer state after the refused batch {batch}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
);

device_test!(
    without_the_non_finite_stop_a_diverging_fit_reports_its_nan_loss,
    |device| {
        let mut model = Sequential::new([2]).on(&device).add(Dense::new(1)).unwrap();
        model
            .compile(Sgd::new(1e18), Loss::MeanSquaredError, &[])
            .unwrap();
        let data = Dataset::new(
            (0..64).map(|i| (i % 7) as f32).collect(),
            [2],
            Targets::Values {
                values: (0..32).map(|i| (i % 5) as f32).collect(),
                width: 1,
            },
        )
        .unwrap();
        let config = FitConfig {
            epochs: 2,
            batch_size: 4,
            verbose: false,
            stop_on_non_finite: false,
            ..Default::default()
        };
        let history = model.fit(&data, &config).unwrap();
        assert!(!history.train[1].loss.is_finite(), "{:?}", history.train);
    }
);
