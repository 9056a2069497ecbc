//! The face sex head: the face embedder installed by scripts/setup.sh, the
//! shipped head, and how the server blends them into a face's answer.

mod common;

use std::path::Path;

use common::{fixture, root};
use emotion_ai::decode::{decode_image, ImageLimits};
use emotion_ai::detect::crop_face_as;
use emotion_ai::model::face_embedder::{
    blend_sex, FaceEmbedder, FaceSexHeadModel, DEFAULT_FACE_EMBEDDER, DESCRIPTOR_SIZE, EMBEDDER_INPUT,
};
use emotion_ai::model::LoadedFaceModel;
use emotion_ai::predict::{Analyzer, AnalyzerConfig};
use tch::Tensor;

fn embedder() -> FaceEmbedder {
    FaceEmbedder::load(Path::new(DEFAULT_FACE_EMBEDDER)).expect("bash scripts/setup.sh installs the face embedder")
}

fn head() -> FaceSexHeadModel {
    FaceSexHeadModel::load(&root().join("models/face_sex_head.safetensors"), Path::new(DEFAULT_FACE_EMBEDDER))
        .expect("the shipped face sex head and the installed embedder")
}

fn distance(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).norm().double_value(&[])
}

/// scripts/face_embedding_reference.py computes the descriptor of a fixed
/// grey pattern as face-api.js does, in numpy with TensorFlow's layouts.
#[test]
fn the_descriptor_matches_the_numpy_reference() {
    let reference: serde_json::Value =
        serde_json::from_slice(&fixture("face_embedding_reference.json")).expect("the reference fixture");
    let expected: Vec<f32> = serde_json::from_value(reference["descriptor"].clone()).unwrap();
    assert_eq!(expected.len() as i64, DESCRIPTOR_SIZE);
    let side = EMBEDDER_INPUT as usize;
    let pattern: Vec<u8> =
        (0..side * side).map(|i| ((i % side) * 3 + (i / side) * 5 + ((i % side) * (i / side)) % 17) as u8).collect();
    let grey = Tensor::from_slice(&pattern).view([1, 1, EMBEDDER_INPUT, EMBEDDER_INPUT]);
    let embedder = embedder();
    // The three-channel input, and the grey path the server takes.
    let three = tch::no_grad(|| embedder.forward(&grey.expand([1, 3, EMBEDDER_INPUT, EMBEDDER_INPUT], false)));
    let served = embedder.describe_gray(&[image::GrayImage::from_raw(150, 150, pattern).unwrap()], false).unwrap();
    for (path, ours) in [("three channels", three), ("grey", served)] {
        let ours = Vec::<f32>::try_from(ours.get(0)).unwrap();
        let worst = ours.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{path}: largest difference {worst}");
    }
}

#[test]
fn one_face_at_three_sizes_is_one_person_and_a_coffee_cup_is_not() {
    // group.jpg holds the same portrait at three sizes, one mirrored.
    let analyzer = common::analyzer();
    let bytes = fixture("group.jpg");
    let image = decode_image(&bytes, ImageLimits::default()).unwrap();
    let faces = analyzer.analyze_image_bytes(&bytes).unwrap().faces;
    assert_eq!(faces.len(), 3);
    let spec = head().card.crop();
    let crops: Vec<_> = faces.iter().map(|f| crop_face_as(&image.gray, f.bbox, spec)).collect();
    let coffee = decode_image(&fixture("coffee.jpg"), ImageLimits::default()).unwrap();
    let whole = emotion_ai::detect::FaceBox { x: 50, y: 0, width: 200, height: 200 };
    let mut all = crops.clone();
    all.push(crop_face_as(&coffee.gray, whole, spec));
    let d = embedder().describe_gray(&all, true).unwrap();
    // dlib's rule: one person's faces lie within 0.6 of each other.
    for (i, j) in [(0, 1), (0, 2), (1, 2)] {
        let near = distance(&d.get(i), &d.get(j));
        assert!(near < 0.6, "faces {i} and {j}: {near:.3}");
    }
    for i in 0..3 {
        let far = distance(&d.get(i), &d.get(3));
        assert!(far > 0.6, "face {i} and the coffee cup: {far:.3}");
    }
}

#[test]
fn the_served_sex_is_the_network_moved_toward_the_head() {
    let with_head = common::analyzer();
    let mut config = AnalyzerConfig::with_models_dir(&root().join("models"));
    config.face_sex_head_model = None;
    let network_alone = Analyzer::load(config).unwrap();
    let head = head();
    let network = LoadedFaceModel::load(&root().join("models/face_sex.safetensors")).unwrap();
    assert_eq!(with_head.face_sex_head_card().map(|c| c.head_weight), Some(head.card.head_weight));
    assert!(network_alone.face_sex_head_card().is_none());

    for name in ["astronaut.jpg", "group.jpg", "portrait_640x480.jpg"] {
        let bytes = fixture(name);
        let image = decode_image(&bytes, ImageLimits::default()).unwrap();
        let served = with_head.analyze_image_bytes(&bytes).unwrap().faces;
        let alone = network_alone.analyze_image_bytes(&bytes).unwrap().faces;
        assert_eq!(served.len(), alone.len());
        let crops: Vec<_> = served.iter().map(|f| crop_face_as(&image.gray, f.bbox, head.card.crop())).collect();
        let head_male = head.male_probabilities(&crops).unwrap();
        for ((s, a), h) in served.iter().zip(&alone).zip(head_male) {
            assert_eq!(s.emotion, a.emotion, "{name}: the head leaves the emotion alone");
            // The network as the head's card says it is read beside the head:
            // the face alone, or with its mirror image.
            let crop = crop_face_as(&image.gray, s.bbox, network.card.input.crop());
            let side = i64::from(crop.width());
            let batch = Tensor::from_slice(crop.as_raw()).view([1, 1, side, side]).to_kind(tch::Kind::Float);
            let p =
                Vec::<f32>::try_from(network.net.predict_proba_with(&batch, head.card.network_mirror).get(0)).unwrap();
            let expected = blend_sex([p[0], p[1]], h, head.card.head_weight);
            let got = [s.sex.probabilities[0].probability, s.sex.probabilities[1].probability];
            assert!(
                (got[0] - expected[0]).abs() < 1e-5 && (got[1] - expected[1]).abs() < 1e-5,
                "{name}: {got:?} {expected:?}"
            );
        }
    }
}

#[test]
fn a_missing_embedder_stops_the_server_at_start_with_its_path() {
    let mut config = AnalyzerConfig::with_models_dir(&root().join("models"));
    config.face_embedder = Path::new("/nonexistent/face_recognition_model-weights_manifest.json").to_path_buf();
    let error = format!("{:#}", Analyzer::load(config).err().expect("no embedder, no server"));
    assert!(error.contains("/nonexistent/face_recognition_model-weights_manifest.json"), "{error}");
}

#[test]
fn a_head_card_asking_for_a_crop_too_small_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("face_sex_head.safetensors");
    std::fs::copy(root().join("models/face_sex_head.safetensors"), &weights).unwrap();
    let mut card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root().join("models/face_sex_head.json")).unwrap()).unwrap();
    card["input_size"] = serde_json::json!(32);
    std::fs::write(dir.path().join("face_sex_head.json"), card.to_string()).unwrap();
    let error = FaceSexHeadModel::load(&weights, Path::new(DEFAULT_FACE_EMBEDDER)).err().expect("refused").to_string();
    assert!(error.contains("input_size 32"), "{error}");
}

/// `train face-sex-head --tune-blocks`: the embedder's last blocks trained
/// on with the head, the epoch (0, untuned, included) chosen by the held
/// tenth's log loss, and what it returns is that epoch's network.
#[test]
fn tuning_the_tail_keeps_the_epoch_the_held_faces_choose() {
    use emotion_ai::train::face_sex_head::{tune_tail, TailTuning};
    use emotion_ai::train::fer2013::FaceSet;
    use emotion_ai::train::utkface::SexSet;
    use tch::{Device, Kind};

    tch::manual_seed(5);
    let embedder = embedder();
    // 40 faces of noise, the "men" (a third, two of the four held faces)
    // brighter: a cue the tail can learn.
    let n = 40i64;
    let male: Vec<i64> = (0..n).map(|i| i64::from(i % 3 == 0)).collect();
    let level =
        Tensor::from_slice(&male.iter().map(|&m| 90.0 + 60.0 * m as f32).collect::<Vec<_>>()).view([n, 1, 1, 1]);
    let side = EMBEDDER_INPUT;
    let images = (Tensor::rand([n, 1, side, side], (Kind::Float, Device::Cpu)) * 80.0 + level).to_kind(Kind::Uint8);
    let set = SexSet {
        faces: FaceSet {
            images,
            labels: Tensor::from_slice(&male),
            names: vec![String::new(); n as usize],
            targets: None,
        },
        ages: vec![30; n as usize],
        races: vec![0; n as usize],
        detected: vec![true; n as usize],
    };
    let tuning = TailTuning { blocks: 2, epochs: 3, lr: 1e-3, seed: 1 };
    let (_vs, tail, head, record) = tune_tail(&embedder, &set, &tuning).expect("tuning");
    let epochs = record["by_epoch"].as_array().expect("a record per epoch");
    assert_eq!(epochs.len(), 4, "epoch 0 and three more");
    let losses: Vec<f64> = epochs.iter().map(|e| e["held_loss"].as_f64().unwrap()).collect();
    let chosen = record["chosen_epoch"].as_u64().unwrap() as usize;
    let lowest = losses.iter().cloned().fold(f64::INFINITY, f64::min);
    assert_eq!(losses[chosen], lowest, "the epoch with the held faces' lowest loss: {losses:?}");
    // The returned tail and head are that epoch's: the held faces (every
    // tenth) give its loss again (rounded to 4 places in the record).
    let held: Vec<i64> = (0..n).filter(|i| i % 10 == 9).collect();
    let held_faces = set.faces.images.index_select(0, &Tensor::from_slice(&held));
    let logits = tch::no_grad(|| head.forward(&tail.forward(&embedder.trunk_gray(&held_faces, 2))));
    let y = Tensor::from_slice(&held.iter().map(|&i| male[i as usize] as f32).collect::<Vec<_>>());
    let loss =
        logits.binary_cross_entropy_with_logits::<Tensor>(&y, None, None, tch::Reduction::Mean).double_value(&[]);
    assert!((loss - losses[chosen]).abs() < 2e-3, "held loss {loss} against the record's {}", losses[chosen]);
}
