//! The functional model API: multi-input models, shared and frozen layers, merge layers, graph
//! validation, masks, buffers, save/load of functional models, custom training loops, and the
//! fixes for what a new user stumbled on (channels-last shapes, tuples, devices, 0/1 labels,
//! early stopping, callbacks in `FitConfig`, Keras-style messages and type names).

use kiln::device::device_test;
use kiln::prelude::*;

/// A deterministic pseudo-random value in [-1, 1) for `i`.
fn noise(i: u64) -> f32 {
    let x = i
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// Every (user, item) pair of a tiny rating set whose ratings are dot products of hidden 3-d
/// factors.
fn ratings(users: u32, items: u32) -> (Vec<u32>, Vec<u32>, Vec<f32>) {
    let factor = |kind: u64, id: u32, k: u64| noise(kind * 1000 + u64::from(id) * 10 + k);
    let (mut us, mut is, mut rs) = (Vec::new(), Vec::new(), Vec::new());
    for u in 0..users {
        for i in 0..items {
            us.push(u);
            is.push(i);
            rs.push((0..3).map(|k| factor(1, u, k) * factor(2, i, k)).sum());
        }
    }
    (us, is, rs)
}

/// user id, item id → an Embedding each → Flatten → Dot: the rating.
fn recommender(users: usize, items: usize) -> (Model, Node) {
    let user = Input::ids([1]).named("user");
    let item = Input::ids([1]).named("item");
    let u = Flatten::new()
        .apply(&Embedding::new(users, 8).apply(&user).unwrap())
        .unwrap();
    let i = Flatten::new()
        .apply(&Embedding::new(items, 8).apply(&item).unwrap())
        .unwrap();
    let rating = Dot::new(1).apply(&[&u, &i]).unwrap();
    let model = Model::new(&[&user, &item], &[&rating]).unwrap();
    (model, rating)
}

device_test!(two_input_recommender_learns_ratings, |device| {
    let (users, items, values) = ratings(12, 10);
    let n = values.len();
    // Columns named after the inputs, in another order: they are matched by name.
    let data = Dataset::from_inputs(
        vec![
            ("item", Column::ids(items.clone(), [1])),
            ("user", Column::ids(users.clone(), [1])),
        ],
        Targets::Values {
            values: values.clone(),
            width: 1,
        },
    )
    .unwrap();
    let (model, rating) = recommender(12, 10);
    assert_eq!(rating.shape(), &[1]);
    let mut model = model.on(&device);
    model
        .compile(Adam::new(0.05), Loss::MeanSquaredError, &[])
        .unwrap();
    let before = model.evaluate(&data, 64).unwrap().loss;
    let history = model
        .fit(
            &data,
            &FitConfig {
                epochs: 30,
                batch_size: 16,
                verbose: false,
                ..Default::default()
            },
        )
        .unwrap();
    let after = model.evaluate(&data, 64).unwrap().loss;
    assert!(
        after < 0.2 * before,
        "the rating loss fell only from {before} to {after}"
    );
    assert!(history.train.last().unwrap().loss < history.train[0].loss);
    for (_, var) in model.named_parameters() {
        assert!(var.tensor().device().same_device(&device));
    }

    // predict over a data set without targets, in batches, equals predict on tensors.
    let unlabelled = Dataset::from_inputs(
        vec![
            ("user", Column::ids(users.clone(), [1])),
            ("item", Column::ids(items.clone(), [1])),
        ],
        Targets::None,
    )
    .unwrap();
    let batched = model.predict_dataset(&unlabelled, 7).unwrap();
    assert_eq!(batched.dims(), &[n, 1]);
    let u = Tensor::from_slice(&users, [n, 1], &device).unwrap();
    let i = Tensor::from_slice(&items, [n, 1], &device).unwrap();
    let whole = model.predict(&[&u, &i]).unwrap();
    let (a, b) = (
        batched.to_vec::<f32>().unwrap(),
        whole.to_vec::<f32>().unwrap(),
    );
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
    // fit refuses data without targets.
    let err = model
        .fit(&unlabelled, &FitConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no targets"), "{err}");
});

/// x (4 features) → a shared Dense trunk → two heads: `price` (regression, linear) and
/// `approved` (0/1, sigmoid); with the data: price = x0 + 2·x1, approved = x2 + x3 > 0.
fn two_headed(samples: usize) -> (Model, Dataset) {
    let x = Input::new(4);
    let trunk = Dense::new(16)
        .activation(Activation::Relu)
        .apply(&x)
        .unwrap();
    let price = Dense::new(1).shared().named("price").apply(&trunk).unwrap();
    let approved = (Dense::new(1).activation(Activation::Sigmoid).shared())
        .named("approved")
        .apply(&trunk)
        .unwrap();
    let model = Model::new(&[&x], &[&price, &approved]).unwrap();
    let features: Vec<f32> = (0..samples * 4).map(|i| noise(i as u64)).collect();
    let prices = features.chunks(4).map(|f| f[0] + 2.0 * f[1]).collect();
    let labels = features
        .chunks(4)
        .map(|f| u32::from(f[2] + f[3] > 0.0))
        .collect();
    let data = Dataset::new(features, [4], Targets::None)
        .unwrap()
        .with_output_targets(vec![
            Targets::Values {
                values: prices,
                width: 1,
            },
            Targets::Classes { labels, classes: 2 },
        ])
        .unwrap();
    (model, data)
}

device_test!(
    a_two_output_model_trains_each_head_with_its_own_loss,
    |device| {
        let (model, data) = two_headed(256);
        assert_eq!(model.output_names(), ["price", "approved"]);
        let mut model = model.on(&device);
        model
            .compile(
                Adam::new(0.02),
                Losses::per_output([Loss::MeanSquaredError, Loss::BinaryCrossentropy])
                    .weighted(&[1.0, 0.5]),
                &[Metric::MeanAbsoluteError, Metric::Accuracy],
            )
            .unwrap();
        let before = model.evaluate(&data, 64).unwrap();
        let history = model
            .fit(
                &data,
                &FitConfig {
                    epochs: 40,
                    batch_size: 32,
                    verbose: false,
                    ..Default::default()
                },
            )
            .unwrap();
        let after = model.evaluate(&data, 64).unwrap();
        // Keras's names: the total, then each output's loss and metrics.
        let names: Vec<String> = after.values().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "loss",
                "price_loss",
                "price_mae",
                "price_accuracy",
                "approved_loss",
                "approved_mae",
                "approved_accuracy"
            ]
        );
        for e in [&before, &after, history.train.last().unwrap()] {
            let total = e.get("price_loss").unwrap() + 0.5 * e.get("approved_loss").unwrap();
            assert!(
                (e.loss - total).abs() <= 1e-4 * (1.0 + total.abs()),
                "the total {} is not price_loss + 0.5 approved_loss = {total}",
                e.loss
            );
        }
        let (price, approved) = (
            after.get("price_loss").unwrap(),
            after.get("approved_loss").unwrap(),
        );
        assert!(
            price < 0.2 * before.get("price_loss").unwrap(),
            "price loss fell only from {before:?} to {after:?}"
        );
        assert!(approved < 0.5 * before.get("approved_loss").unwrap());
        assert!(after.get("approved_accuracy").unwrap() > 0.9, "{after:?}");

        // predict_all gives each head (after its activation); train_on_batch takes one target per output.
        let x = Tensor::from_slice(&data.features().unwrap()[..8 * 4], [8, 4], &device).unwrap();
        let outputs = model.predict_all(&x).unwrap();
        assert_eq!(outputs.len(), 2);
        assert_eq!(outputs[1].dims(), &[8, 1]);
        assert!(
            outputs[1]
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .all(|p| (0.0..=1.0).contains(p))
        );
        let y_price = Tensor::from_slice(&[0.5f32; 8], [8, 1], &device).unwrap();
        let y_approved = Tensor::from_slice(&[1u32; 8], [8], &device).unwrap();
        let loss = model
            .train_on_batch(&x, &[y_price.clone(), y_approved])
            .unwrap();
        assert!(loss.to_scalar().unwrap().is_finite());

        // What does not fit is refused, naming the outputs.
        let err = model.train_on_batch(&x, &y_price).unwrap_err().to_string();
        assert!(err.contains("2 outputs (price, approved)"), "{err}");
        let one_target = Dataset::new(
            data.features().unwrap().to_vec(),
            [4],
            data.targets().clone(),
        )
        .unwrap();
        let err = model.evaluate(&one_target, 32).unwrap_err().to_string();
        assert!(
            err.contains("targets for 1") && err.contains("with_output_targets"),
            "{err}"
        );
        let err = model
            .fit(
                &data,
                &FitConfig {
                    class_weight: Some(vec![1.0, 2.0]),
                    verbose: false,
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert_eq!(err.kind(), kiln::ErrorKind::Usage, "{err}");
        let err = model
            .compile(Adam::new(0.01), [Loss::MeanSquaredError; 3], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("3 losses for a model with 2 outputs"), "{err}");
        let err = model
            .compile(
                Adam::new(0.01),
                Losses::per_output([Loss::MeanSquaredError]).weighted(&[1.0, -1.0]),
                &[],
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("loss weight -1"), "{err}");
    }
);

#[test]
fn a_shared_layer_has_one_set_of_weights() {
    let (left, right) = (Input::new(3).named("left"), Input::new(3).named("right"));
    let shared = Dense::new(2).activation(Activation::Tanh).shared();
    let a = shared.apply(&left).unwrap();
    let b = shared.apply(&right).unwrap();
    let sum = Add::new().apply(&[&a, &b]).unwrap();
    let out = Dense::new(1).apply(&sum).unwrap();
    let mut model = Model::new(&[&left, &right], &[&out])
        .unwrap()
        .on(&Device::cpu());
    let names: Vec<String> = model
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "dense.weight",
            "dense.bias",
            "dense_1.weight",
            "dense_1.bias"
        ]
    );
    let summary = model.summary();
    assert!(summary.contains("Total params: 11"), "{summary}");
    assert!(
        summary.contains("left[0][0]") && summary.contains("right[0][0]"),
        "{summary}"
    );
    // A shared layer applied to another shape is refused.
    let err = shared.apply(&Input::new(4)).unwrap_err().to_string();
    assert!(
        err.contains("dense (Dense)") && err.contains("(None, 3)") && err.contains("(None, 4)"),
        "{err}"
    );

    let cpu = Device::cpu();
    let x: Vec<f32> = (0..24).map(noise).collect();
    let (l, r) = (
        Tensor::from_slice(&x[..12], [4, 3], &cpu).unwrap(),
        Tensor::from_slice(&x[12..], [4, 3], &cpu).unwrap(),
    );
    let y = Tensor::from_slice(&[1.0f32, -1.0, 0.5, 0.0], [4, 1], &cpu).unwrap();
    model
        .compile(Sgd::new(0.1), Loss::MeanSquaredError, &[])
        .unwrap();
    for _ in 0..5 {
        model.train_on_batch(&[&l, &r], &y).unwrap();
    }
    // f(a) + f(b) with one f: swapping the inputs gives the same outputs.
    let ab = model.predict(&[&l, &r]).unwrap().to_vec::<f32>().unwrap();
    let ba = model.predict(&[&r, &l]).unwrap().to_vec::<f32>().unwrap();
    assert!(
        ab.iter().zip(&ba).all(|(p, q)| (p - q).abs() < 1e-6),
        "{ab:?} vs {ba:?}"
    );
}

#[test]
fn a_frozen_layer_does_not_change_and_counts_as_non_trainable() {
    let x = Input::new(3);
    let hidden = Dense::new(4)
        .activation(Activation::Relu)
        .trainable(false)
        .apply(&x)
        .unwrap();
    let out = Dense::new(1).apply(&hidden).unwrap();
    let mut model = Model::new(&[&x], &[&out]).unwrap().on(&Device::cpu());
    let summary = model.summary();
    assert!(
        summary.contains("Total params: 21")
            && summary.contains("Trainable params: 5")
            && summary.contains("Non-trainable params: 16"),
        "{summary}"
    );
    assert_eq!(model.trainable_parameters().len(), 2);
    let values = |model: &Model| -> Vec<Vec<f32>> {
        model
            .named_parameters()
            .iter()
            .map(|(_, v)| v.tensor().to_vec::<f32>().unwrap())
            .collect()
    };
    let before = values(&model);
    let cpu = Device::cpu();
    let xs: Vec<f32> = (0..30).map(|i| noise(i + 100)).collect();
    let inputs = Tensor::from_slice(&xs, [10, 3], &cpu).unwrap();
    let targets = Tensor::ones([10, 1], &cpu).unwrap();
    model
        .compile(Adam::new(0.05), Loss::MeanSquaredError, &[])
        .unwrap();
    for _ in 0..5 {
        model.train_on_batch(&inputs, &targets).unwrap();
    }
    let after = values(&model);
    assert_eq!(before[0], after[0], "the frozen kernel moved");
    assert_eq!(before[1], after[1], "the frozen bias moved");
    assert_ne!(before[2], after[2], "the trainable kernel did not move");
    // No gradient is computed for a frozen weight, and an optimizer refuses to step one.
    let frozen: Vec<Var> = model
        .get_layer("dense")
        .unwrap()
        .parameters()
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let grads = model
        .call(&inputs, true)
        .unwrap()
        .mse(&targets)
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(&frozen[0].tensor()).is_none());
    let err = Adam::new(0.1)
        .step(&frozen, &grads)
        .unwrap_err()
        .to_string();
    assert!(err.contains("frozen layer"), "{err}");

    // Unfrozen through get_layer, it trains.
    model.get_layer("dense").unwrap().set_trainable(true);
    assert!(model.summary().contains("Non-trainable params: 0"));
    model.train_on_batch(&inputs, &targets).unwrap();
    assert_ne!(values(&model)[0], after[0]);
    assert!(model.get_layer("nope").is_err());
}

#[test]
fn merge_layers_check_shapes_when_the_graph_is_built() {
    let (a, b, c) = (Input::new(4), Input::new(3), Input::new((3, 2)));
    let err = Concatenate::new().apply(&[&a, &c]).unwrap_err().to_string();
    assert!(
        err.contains("concatenate (Concatenate)") && err.contains("(None, 4) and (None, 3, 2)"),
        "{err}"
    );
    let err = Add::new().apply(&[&a, &b]).unwrap_err().to_string();
    assert!(
        err.contains("add (Add)") && err.contains("(None, 4) and (None, 3)"),
        "{err}"
    );
    let err = Multiply::new().apply(&[&a, &b]).unwrap_err().to_string();
    assert!(err.contains("multiply (Multiply)"), "{err}");
    let err = Dot::new(1).apply(&[&a, &b]).unwrap_err().to_string();
    assert!(err.contains("dot (Dot)") && err.contains("4 vs 3"), "{err}");
    let err = Dot::new(1).apply(&[&a]).unwrap_err().to_string();
    assert!(err.contains("at least two inputs"), "{err}");
    let ids = Input::ids([2]);
    let err = Add::new().apply(&[&a, &ids]).unwrap_err().to_string();
    assert!(
        err.contains("integer ids") && err.contains("Embedding"),
        "{err}"
    );

    // Shapes that fit: Keras's output shapes.
    let d = Input::new((5, 3));
    let e = Input::new((2, 3));
    assert_eq!(
        Concatenate::new()
            .axis(1)
            .apply(&[&c, &Input::new((1, 2))])
            .unwrap()
            .shape(),
        &[4, 2]
    );
    assert_eq!(Concatenate::new().apply(&[&a, &b]).unwrap().shape(), &[7]);
    assert_eq!(Dot::new(2).apply(&[&d, &e]).unwrap().shape(), &[5, 2]);
    assert_eq!(
        Dot::new((1, 1))
            .apply(&[&d, &Input::new((5, 4))])
            .unwrap()
            .shape(),
        &[3, 4]
    );
    assert_eq!(
        Add::new().apply(&[&b, &Input::new(1)]).unwrap().shape(),
        &[3]
    );
}

#[test]
fn merge_layers_compute_keras_values() {
    let cpu = Device::cpu();
    let (a, b) = (Input::new(2), Input::new(2));
    let outputs = [
        Concatenate::new().apply(&[&a, &b]).unwrap(),
        Add::new().apply(&[&a, &b]).unwrap(),
        Multiply::new().apply(&[&a, &b]).unwrap(),
        Dot::new(1).apply(&[&a, &b]).unwrap(),
        Dot::new(1).normalize(true).apply(&[&a, &b]).unwrap(),
    ];
    let model = Model::new(&[&a, &b], &outputs.iter().collect::<Vec<_>>())
        .unwrap()
        .on(&cpu);
    let x = Tensor::from_slice(&[3.0f32, 4.0], [1, 2], &cpu).unwrap();
    let y = Tensor::from_slice(&[4.0f32, 3.0], [1, 2], &cpu).unwrap();
    let got: Vec<Vec<f32>> = model
        .call_all(&[&x, &y], false)
        .unwrap()
        .iter()
        .map(|t| t.to_vec::<f32>().unwrap())
        .collect();
    assert_eq!(got[0], [3.0, 4.0, 4.0, 3.0]);
    assert_eq!(got[1], [7.0, 7.0]);
    assert_eq!(got[2], [12.0, 12.0]);
    assert_eq!(got[3], [24.0]);
    assert!(
        (got[4][0] - 24.0 / 25.0).abs() < 1e-6,
        "cosine {:?}",
        got[4]
    );
    // A model with several outputs says which call to use.
    let err = model.predict(&[&x, &y]).unwrap_err().to_string();
    assert!(
        err.contains("5 outputs") && err.contains("call_all"),
        "{err}"
    );
}

/// `Dot` on `[n, d]` samples contracts the axes Keras would: `axes=2` (the feature axes) gives
/// `[n, m]` of row dot products, `axes=(1, 1)` sums over the first sample axes.
#[test]
fn dot_contracts_the_chosen_axes_of_matrices() {
    let cpu = Device::cpu();
    // x: one sample [[1, 2], [3, 4], [5, 6]] (3×2); y: [[1, 0], [0, 1]] (2×2)
    let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [1, 3, 2], &cpu).unwrap();
    let y = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0], [1, 2, 2], &cpu).unwrap();
    let rows = Dot::new(2).forward(&[&x, &y]).unwrap();
    assert_eq!(rows.dims(), &[1, 3, 2]);
    assert_eq!(
        rows.to_vec::<f32>().unwrap(),
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    );
    // axes (1, 1): Σ_i x[i, a] · z[i, b] with z = [[1, 1], [1, 0], [0, 1]] (3×2)
    let z = Tensor::from_slice(&[1.0f32, 1.0, 1.0, 0.0, 0.0, 1.0], [1, 3, 2], &cpu).unwrap();
    let cols = Dot::new((1, 1)).forward(&[&x, &z]).unwrap();
    assert_eq!(cols.dims(), &[1, 2, 2]);
    // a=0: 1+3, 1+5; a=1: 2+4, 2+6
    assert_eq!(cols.to_vec::<f32>().unwrap(), [4.0, 6.0, 6.0, 8.0]);
}

#[test]
fn graph_validation_names_the_problem() {
    let (a, b) = (Input::new(3).named("a"), Input::new(3).named("b"));
    let out = Dense::new(1).apply(&a).unwrap();
    let both = Add::new()
        .apply(&[&out, &Dense::new(1).apply(&b).unwrap()])
        .unwrap();
    // An output needing an input that is not given.
    let err = Model::new(&[&a], &[&both]).err().unwrap().to_string();
    assert!(
        err.contains("input \"b\"") && err.contains("not among the model's inputs"),
        "{err}"
    );
    // An input that no output uses.
    let err = Model::new(&[&a, &b], &[&out]).err().unwrap().to_string();
    assert!(
        err.contains("input \"b\"") && err.contains("not used"),
        "{err}"
    );
    // An input given twice, a layer output given as an input.
    assert!(
        Model::new(&[&a, &a], &[&out])
            .err()
            .unwrap()
            .to_string()
            .contains("twice")
    );
    let err = Model::new(&[&out], &[&out]).err().unwrap().to_string();
    assert!(
        err.contains("Input nodes") && err.contains("dense (Dense)"),
        "{err}"
    );
    // Two layers given one name.
    let h = Dense::new(2).named("same").apply(&a).unwrap();
    let h = Dense::new(2).named("same").apply(&h).unwrap();
    let err = Model::new(&[&a], &[&h]).err().unwrap().to_string();
    assert!(err.contains("\"same\""), "{err}");
    // Ids into a layer that takes values.
    let err = Dense::new(2)
        .apply(&Input::ids([3]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("integer ids") && err.contains("Embedding"),
        "{err}"
    );
}

#[test]
fn a_functional_model_saves_and_loads() {
    let cpu = Device::cpu();
    let features = Input::new(4).named("features");
    let tokens = Input::ids([3]).named("tokens");
    let t = Flatten::new()
        .apply(
            &Embedding::new(20, 2)
                .mask_zero(true)
                .apply(&tokens)
                .unwrap(),
        )
        .unwrap();
    let f = Dense::new(3)
        .activation(Activation::Relu)
        .named("hidden")
        .apply(&features)
        .unwrap();
    let joined = Concatenate::new().apply(&[&f, &t]).unwrap();
    let out = Dense::new(1)
        .activation(Activation::Sigmoid)
        .apply(&joined)
        .unwrap();
    let mut model = Model::new(&[&features, &tokens], &[&out])
        .unwrap()
        .named("mixed")
        .on(&cpu);
    let n = 16;
    let data = Dataset::from_inputs(
        vec![
            (
                "features",
                Column::features((0..n * 4).map(|i| noise(i as u64)).collect(), 4),
            ),
            (
                "tokens",
                Column::ids((0..n * 3).map(|i| (i * 7 % 20) as u32).collect(), [3]),
            ),
        ],
        Targets::Classes {
            labels: (0..n).map(|i| (i % 2) as u32).collect(),
            classes: 2,
        },
    )
    .unwrap();
    model
        .compile(
            Adam::new(0.01),
            Loss::BinaryCrossentropy,
            &[Metric::Accuracy],
        )
        .unwrap();
    model
        .fit(
            &data,
            &FitConfig {
                epochs: 2,
                batch_size: 8,
                verbose: false,
                ..Default::default()
            },
        )
        .unwrap();
    let dir = std::env::temp_dir().join(format!("kiln-functional-{}", std::process::id()));
    model.save(&dir).unwrap();
    let restored = Model::load_model(&dir, &cpu).unwrap();
    assert_eq!(restored.config(), model.config());
    assert_eq!(restored.summary(), model.summary());
    assert_eq!(restored.name(), "mixed");
    assert_eq!(restored.input_names(), ["features", "tokens"]);
    let unlabelled = Dataset::from_inputs(
        vec![
            ("tokens", data.columns().nth(1).unwrap().1.clone()),
            ("features", data.columns().next().unwrap().1.clone()),
        ],
        Targets::None,
    )
    .unwrap();
    assert_eq!(
        model
            .predict_dataset(&unlabelled, 5)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        restored
            .predict_dataset(&unlabelled, 5)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
    );
    // A functional checkpoint is not a Sequential one.
    let err = Sequential::load_model(&dir, &cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("Model::from_config"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The mean over the steps of a `[steps, d]` sample that the mask marks as real (all steps without
/// a mask): a layer that reads the mask the graph hands it.
struct MaskedMean;

impl Layer for MaskedMean {
    fn kind(&self) -> &'static str {
        "masked_mean"
    }

    fn build(&mut self, _: &str, input: &[usize], _: &Device, _: u64) -> kiln::Result<Vec<usize>> {
        Ok(vec![input[1]])
    }

    fn forward(&self, x: &Tensor, _training: bool) -> kiln::Result<Tensor> {
        x.mean(1, false)
    }

    fn forward_masked(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        training: bool,
    ) -> kiln::Result<Tensor> {
        let Some(mask) = mask else {
            return self.forward(x, training);
        };
        let (batch, steps) = (x.dims()[0], x.dims()[1]);
        let weights = mask.reshape([batch, steps, 1])?;
        let total = x.mul(&weights)?.sum(1, false)?;
        total.div(&mask.sum(1, true)?.maximum_scalar(1.0)?)
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "kind": self.kind() })
    }
}

#[test]
fn embedding_masks_reach_the_layers_downstream() {
    let cpu = Device::cpu();
    let ids = Input::ids([4]);
    let embedding = Embedding::new(10, 3).mask_zero(true).shared();
    let embedded = embedding.apply(&ids).unwrap();
    // Through a merge (masks of both inputs combined) into a layer that reads it.
    let doubled = Add::new().apply(&[&embedded, &embedded]).unwrap();
    let pooled = MaskedMean.apply(&doubled).unwrap();
    let model = Model::new(&[&ids], &[&pooled]).unwrap().on(&cpu);
    let batch = Tensor::from_slice(&[3u32, 5, 0, 0, 7, 0, 0, 0], [2, 4], &cpu).unwrap();
    let got = model.predict(&batch).unwrap().to_vec::<f32>().unwrap();
    let table = embedding.parameters()[0]
        .1
        .tensor()
        .to_vec::<f32>()
        .unwrap();
    let row = |id: usize| &table[id * 3..id * 3 + 3];
    for d in 0..3 {
        let first = row(3)[d] + row(5)[d];
        assert!((got[d] - first).abs() < 1e-6, "{got:?}");
        assert!((got[3 + d] - 2.0 * row(7)[d]).abs() < 1e-6, "{got:?}");
    }
    // Without mask_zero the padding counts.
    let plain = Input::ids([4]);
    let pooled = MaskedMean
        .apply(&Embedding::new(10, 3).apply(&plain).unwrap())
        .unwrap();
    let model = Model::new(&[&plain], &[&pooled]).unwrap().on(&cpu);
    let ids = Tensor::from_slice(&[0u32; 8], [2, 4], &cpu).unwrap();
    assert_eq!(model.predict(&ids).unwrap().dims(), &[2, 3]);
    // The Embedding casts f32 ids and still works in a Sequential model.
    let sequential = Sequential::new([4])
        .on(&cpu)
        .add(Embedding::new(10, 3).mask_zero(true))
        .unwrap()
        .add(MaskedMean)
        .unwrap();
    let as_f32 = Tensor::from_slice(&[3.0f32, 5.0, 0.0, 0.0], [1, 4], &cpu).unwrap();
    assert_eq!(sequential.predict(&as_f32).unwrap().dims(), &[1, 3]);
    assert_eq!(sequential.inputs()[0].dtype(), DType::U32);
}

/// Subtracts a saved (not trained) centre: a layer with a buffer.
struct Centered {
    centre: Option<Var>,
}

impl Layer for Centered {
    fn kind(&self) -> &'static str {
        "centered"
    }

    fn build(
        &mut self,
        _: &str,
        input: &[usize],
        device: &Device,
        _: u64,
    ) -> kiln::Result<Vec<usize>> {
        self.centre = Some(Var::new(Tensor::zeros(input.to_vec(), device)?));
        Ok(input.to_vec())
    }

    fn forward(&self, x: &Tensor, _training: bool) -> kiln::Result<Tensor> {
        x.sub(&self.centre.as_ref().unwrap().tensor())
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "kind": self.kind() })
    }

    fn buffers(&self) -> Vec<(&'static str, Var)> {
        self.centre
            .iter()
            .map(|c| ("running_mean", c.clone()))
            .collect()
    }
}

#[test]
fn buffers_are_saved_loaded_and_counted_as_non_trainable() {
    let cpu = Device::cpu();
    let build = || {
        let x = Input::new(3);
        let c = Centered { centre: None }.apply(&x).unwrap();
        let y = Dense::new(1).apply(&c).unwrap();
        Model::new(&[&x], &[&y]).unwrap().on(&cpu)
    };
    let mut model = build();
    let summary = model.summary();
    assert!(
        summary.contains("Total params: 7") && summary.contains("Non-trainable params: 3"),
        "{summary}"
    );
    let buffers = model.named_buffers();
    assert_eq!(buffers.len(), 1);
    assert_eq!(buffers[0].0, "centered.running_mean");
    model
        .set_weight(
            "centered.running_mean",
            &RawTensor::from_slice(&[1.0f32, 2.0, 3.0], [3], &cpu).unwrap(),
        )
        .unwrap();
    model
        .compile(Sgd::new(0.1), Loss::MeanSquaredError, &[])
        .unwrap();
    let x = Tensor::from_slice(&[1.0f32, 0.0, -1.0, 0.5, 0.5, 0.5], [2, 3], &cpu).unwrap();
    model
        .train_on_batch(&x, &Tensor::ones([2, 1], &cpu).unwrap())
        .unwrap();
    assert_eq!(
        model.named_buffers()[0].1.tensor().to_vec::<f32>().unwrap(),
        [1.0, 2.0, 3.0],
        "the optimizer leaves buffers alone"
    );
    let dir = std::env::temp_dir().join(format!("kiln-buffers-{}", std::process::id()));
    model.save(&dir).unwrap();
    let mut restored = build();
    restored.load(&dir).unwrap();
    assert_eq!(
        restored.named_buffers()[0]
            .1
            .tensor()
            .to_vec::<f32>()
            .unwrap(),
        [1.0, 2.0, 3.0]
    );
    assert_eq!(
        model.predict(&x).unwrap().to_vec::<f32>().unwrap(),
        restored.predict(&x).unwrap().to_vec::<f32>().unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_custom_training_loop_with_batches_and_parameters() {
    let cpu = Device::cpu();
    // y = 2 x0 - x1 + 0.5
    let xs: Vec<f32> = (0..128).map(|i| noise(i + 500)).collect();
    let ys: Vec<f32> = xs.chunks(2).map(|p| 2.0 * p[0] - p[1] + 0.5).collect();
    let data = Dataset::new(
        xs,
        2,
        Targets::Values {
            values: ys,
            width: 1,
        },
    )
    .unwrap();
    let x = Input::new(2);
    let y = Dense::new(1).apply(&x).unwrap();
    let model = Model::new(&[&x], &[&y]).unwrap().on(&cpu);
    let params = model.trainable_parameters();
    let mut optimizer = Adam::new(0.1);
    let mut losses = Vec::new();
    for epoch in 0..20 {
        let mut total = 0.0;
        for batch in model.batches(&data, 16, Some(epoch)).unwrap() {
            let batch = batch.unwrap();
            assert_eq!(batch.inputs[0].dims(), &[batch.len, 2]);
            let loss = model
                .call(&batch.inputs, true)
                .unwrap()
                .mse(batch.targets().unwrap())
                .unwrap();
            optimizer.step(&params, &loss.backward().unwrap()).unwrap();
            total += loss.to_scalar().unwrap();
        }
        losses.push(total);
    }
    assert!(losses[19] < 0.01 * losses[0], "{losses:?}");
    // The iterator of a data set alone: every sample once, on the device asked for.
    let seen: usize = data
        .batches(50, None, &cpu)
        .unwrap()
        .map(|b| b.unwrap().len)
        .sum();
    assert_eq!(seen, 64);
}

#[test]
fn channels_last_shapes_are_an_error_that_says_channels_first() {
    let cpu = Device::cpu();
    for padding in [Padding::Valid, Padding::Same] {
        let err = Sequential::new((28, 28, 1))
            .on(&cpu)
            .add(Conv2D::new(8, (3, 3)).padding(padding))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("channels-first") && err.contains("[1, 28, 28]") && err.contains("conv2d"),
            "{err}"
        );
    }
    let image = Input::new([32, 32, 3]);
    let err = MaxPooling2D::new((2, 2))
        .apply(&image)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[3, 32, 32]"), "{err}");
    // Channels first is fine, and tuples are shapes too.
    let model = Sequential::new((1, 28, 28))
        .add(Conv2D::new(8, (3, 3)))
        .unwrap();
    assert_eq!(model.output().shape(), &[8, 26, 26]);
    assert_eq!(Input::new(30).shape(), &[30]);
    assert_eq!(Input::new((4, 2)).shape(), &[4, 2]);
    assert_eq!(Input::new(vec![5]).shape(), &[5]);
}

device_test!(on_after_add_moves_the_whole_model, |device| {
    // Layers added first, the device chosen last: everything runs there, nothing is left behind.
    let mut model = Sequential::new([4])
        .add(Dense::new(8).activation(Activation::Relu))
        .unwrap()
        .add(Dense::new(1))
        .unwrap()
        .on(&device);
    model
        .compile(Adam::new(0.01), Loss::MeanSquaredError, &[])
        .unwrap();
    let cpu = Device::cpu();
    // Inputs on the CPU are moved to the model's device.
    let x = Tensor::ones([3, 4], &cpu).unwrap();
    let y = Tensor::zeros([3, 1], &cpu).unwrap();
    model.train_on_batch(&x, &y).unwrap();
    for (name, var) in model.named_parameters() {
        assert!(var.tensor().device().same_device(&device), "{name}");
    }
    // Moved afterwards, optimizer state included, it keeps training.
    model.to_device(&cpu).unwrap();
    let loss = model.train_on_batch(&x, &y).unwrap();
    assert!(loss.device().same_device(&cpu));
    for (name, var) in model.named_parameters() {
        assert!(var.tensor().device().same_device(&cpu), "{name}");
    }
});

#[test]
fn binary_cross_entropy_takes_integer_labels() {
    let cpu = Device::cpu();
    let xs: Vec<f32> = (0..200).map(|i| noise(i + 900)).collect();
    let labels: Vec<u32> = xs.chunks(2).map(|p| u32::from(p[0] + p[1] > 0.0)).collect();
    let data = Dataset::new(
        xs.clone(),
        [2],
        Targets::Classes {
            labels: labels.clone(),
            classes: 2,
        },
    )
    .unwrap();
    let mut model = Sequential::new(2)
        .on(&cpu)
        .add(Dense::new(1).activation(Activation::Sigmoid))
        .unwrap();
    model
        .compile(
            Adam::new(0.1),
            Loss::BinaryCrossentropy,
            &[Metric::Accuracy],
        )
        .unwrap();
    model
        .fit(
            &data,
            &FitConfig {
                epochs: 10,
                batch_size: 20,
                verbose: false,
                ..Default::default()
            },
        )
        .unwrap();
    let accuracy = model
        .evaluate(&data, 50)
        .unwrap()
        .metric(Metric::Accuracy)
        .unwrap();
    assert!(accuracy > 0.9, "accuracy {accuracy}");
    // train_on_batch with [batch] u32 labels too.
    let x = Tensor::from_slice(&xs[..20], [10, 2], &cpu).unwrap();
    let y = Tensor::from_slice(&labels[..10], [10], &cpu).unwrap();
    assert!(
        model
            .train_on_batch(&x, &y)
            .unwrap()
            .to_scalar()
            .unwrap()
            .is_finite()
    );
    // More than two classes is not a binary problem.
    let three = Dataset::new(
        vec![0.0; 6],
        2,
        Targets::Classes {
            labels: vec![0, 1, 2],
            classes: 3,
        },
    )
    .unwrap();
    let err = model.evaluate(&three, 3).unwrap_err().to_string();
    assert!(err.contains("3 classes") && err.contains("Sparse"), "{err}");
}

/// Records each epoch's weights.
struct Recorder(Vec<Vec<Vec<f32>>>);

impl Callback for Recorder {
    fn on_epoch_end(
        &mut self,
        _epoch: usize,
        _logs: &kiln::nn::callbacks::EpochLogs<'_>,
        model: &mut Model,
    ) -> kiln::Result<kiln::nn::callbacks::Control> {
        self.0.push(
            model
                .named_parameters()
                .iter()
                .map(|(_, v)| v.tensor().to_vec::<f32>().unwrap())
                .collect(),
        );
        Ok(kiln::nn::callbacks::Control::Continue)
    }
}

#[test]
fn early_stopping_counts_patience_like_keras_and_restores_the_best_weights() {
    let cpu = Device::cpu();
    let xs: Vec<f32> = (0..64).map(|i| noise(i + 1300)).collect();
    let ys: Vec<f32> = xs.chunks(2).map(|p| p[0] - p[1]).collect();
    let data = Dataset::new(
        xs,
        2,
        Targets::Values {
            values: ys,
            width: 1,
        },
    )
    .unwrap();
    let mut model = Sequential::new(2).on(&cpu).add(Dense::new(1)).unwrap();
    model
        .compile(Adam::new(0.05), Loss::MeanSquaredError, &[])
        .unwrap();
    // Two good epochs, then a learning rate so large that the loss gets worse.
    let mut schedule = LearningRateScheduler(|epoch, lr| if epoch < 2 { lr } else { 50.0 });
    let mut recorder = Recorder(Vec::new());
    let mut stopping = EarlyStopping::new(Monitor::Loss, 2).restore_best_weights(true);
    let history = model
        .fit_with(
            &data,
            &FitConfig {
                epochs: 20,
                batch_size: 8,
                verbose: false,
                ..Default::default()
            },
            &mut [&mut schedule, &mut recorder, &mut stopping],
        )
        .unwrap();
    let (best, stopped) = (
        stopping.best_epoch().unwrap(),
        stopping.stopped_epoch().unwrap(),
    );
    assert_eq!(
        stopped - best,
        2,
        "patience 2: two epochs without improvement"
    );
    assert_eq!(history.train.len(), stopped + 1);
    let now: Vec<Vec<f32>> = model
        .named_parameters()
        .iter()
        .map(|(_, v)| v.tensor().to_vec::<f32>().unwrap())
        .collect();
    assert_eq!(now, recorder.0[best], "the best epoch's weights are back");
    assert_ne!(now, recorder.0[stopped]);
}

#[test]
fn summaries_use_keras_type_names() {
    let model = Sequential::new([1, 28, 28])
        .add(Conv2D::new(4, (3, 3)).activation(Activation::Relu))
        .unwrap()
        .add(MaxPooling2D::new((2, 2)))
        .unwrap()
        .add(Flatten::new())
        .unwrap()
        .add(Dense::new(10).activation(Activation::Softmax))
        .unwrap();
    let summary = model.summary();
    for row in [
        "conv2d (Conv2D)",
        "max_pooling2d (MaxPooling2D)",
        "flatten (Flatten)",
        "dense (Dense)",
        "(None, 4, 26, 26)",
    ] {
        assert!(summary.contains(row), "{row} missing from\n{summary}");
    }
    let (model, _) = recommender(5, 5);
    let summary = model.summary();
    for row in [
        "user (InputLayer)",
        "embedding (Embedding)",
        "embedding_1 (Embedding)",
        "dot (Dot)",
        "flatten[0][0], flatten_1[0][0]",
    ] {
        assert!(summary.contains(row), "{row} missing from\n{summary}");
    }
}

#[test]
fn multi_input_data_and_inputs_are_checked_with_keras_messages() {
    let cpu = Device::cpu();
    let (model, _) = recommender(5, 5);
    let model = model.on(&cpu);
    let u = Tensor::from_slice(&[1u32, 2], [2, 1], &cpu).unwrap();
    let err = model.predict(&u).unwrap_err().to_string();
    assert!(
        err.contains("takes 2 input(s) (user, item), got 1"),
        "{err}"
    );
    let wide = Tensor::from_slice(&[1u32, 2, 3, 4], [2, 2], &cpu).unwrap();
    let err = model.predict(&[&u, &wide]).unwrap_err().to_string();
    assert!(
        err.contains("expected shape (None, 1), got (2, 2)"),
        "{err}"
    );
    // Columns named otherwise than the inputs.
    let data = Dataset::from_inputs(
        vec![
            ("users", Column::ids(vec![1, 2], [1])),
            ("items", Column::ids(vec![1, 2], [1])),
        ],
        Targets::Values {
            values: vec![0.0, 1.0],
            width: 1,
        },
    )
    .unwrap();
    let err = model.predict_dataset(&data, 2).unwrap_err().to_string();
    assert!(
        err.contains("no column named \"user\"") && err.contains("users, items"),
        "{err}"
    );
    // Unnamed columns go by position, and their shapes are checked.
    let data = Dataset::from_columns(
        vec![
            Column::ids(vec![1, 2], [1]),
            Column::ids(vec![1, 2, 3, 4], [2]),
        ],
        Targets::None,
    )
    .unwrap();
    let err = model.predict_dataset(&data, 2).unwrap_err().to_string();
    assert!(
        err.contains("expected shape (None, 1), got (None, 2)"),
        "{err}"
    );
    // Columns that disagree on the sample count are refused when the data set is made.
    let err = Dataset::from_inputs(
        vec![("user", Column::ids(vec![1, 2, 3], [1]))],
        Targets::Values {
            values: vec![0.0, 1.0],
            width: 1,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("input \"user\"") && err.contains("2 targets"),
        "{err}"
    );
}

device_test!(
    a_convolution_fuses_with_its_max_pool_only_when_nothing_else_reads_it,
    |device| {
        // One chain the executor fuses (conv + ReLU read only by the pooling) and one it must not
        // (the convolution's output also feeds a global average): both give the composed ops' values.
        let x = Input::new([2, 9, 9]);
        let conv = Conv2D::new(3, (3, 3)).activation(Activation::Relu).shared();
        let features = conv.apply(&x).unwrap();
        let pooled = Flatten::new()
            .apply(&MaxPooling2D::new((2, 2)).apply(&features).unwrap())
            .unwrap();
        let averaged = GlobalAveragePooling2D::new().apply(&features).unwrap();
        let both = Concatenate::new().apply(&[&pooled, &averaged]).unwrap();
        let shared_reader = Model::new(&[&x], &[&both]).unwrap();
        let y = Input::new([2, 9, 9]);
        let chain = MaxPooling2D::new((2, 2))
            .apply(&conv.apply(&y).unwrap())
            .unwrap();
        let chain = Model::new(&[&y], &[&Flatten::new().apply(&chain).unwrap()]).unwrap();
        let images = Tensor::from_slice(
            &(0..3 * 2 * 81).map(|i| noise(i as u64)).collect::<Vec<_>>(),
            [3, 2, 9, 9],
            &device,
        )
        .unwrap();
        let params = chain.named_parameters();
        let (w, b) = (
            params[0].1.tensor().to_device(&device).unwrap(),
            params[1].1.tensor().to_device(&device).unwrap(),
        );
        let conv_out = images
            .conv2d(&w, Some(&b), Conv2dParams::default())
            .unwrap()
            .relu()
            .unwrap();
        let want_pooled = conv_out
            .max_pool2d(Pool2dParams::square(2))
            .unwrap()
            .flatten(1)
            .unwrap();
        let want_averaged = conv_out.mean(-1, false).unwrap().mean(-1, false).unwrap();
        let close = |got: &Tensor, want: &Tensor, what: &str| {
            let (got, want) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
            assert_eq!(got.len(), want.len(), "{what}");
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5 + 1e-4 * b.abs(), "{what}: {a} vs {b}");
            }
        };
        close(
            &chain.predict(&images).unwrap(),
            &want_pooled,
            "fused chain",
        );
        let want_both = Tensor::concat(&[&want_pooled, &want_averaged], 1).unwrap();
        close(
            &shared_reader.predict(&images).unwrap(),
            &want_both,
            "shared reader",
        );
    }
);
