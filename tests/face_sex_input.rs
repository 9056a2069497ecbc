//! A face-sex model that reads another crop than the emotion network (a
//! larger one with context around the box, as `train face-sex --input-size
//! --margin` makes) is served with exactly the crop its card names: the
//! analyzer's answer equals the network run by hand on that crop.

mod common;

use common::{fixture, root};
use emotion_ai::decode::{decode_image, ImageLimits};
use emotion_ai::detect::{crop_face_as, CropSpec};
use emotion_ai::model::{card_path, FaceNet, FaceNetConfig, InputSpec, LoadedFaceModel, ModelCard};
use emotion_ai::predict::{Analyzer, AnalyzerConfig, FaceSource};
use tch::{nn, Device, Tensor};

/// A small random-weight sex network on 64 px crops with a margin of 0.3,
/// saved with its card under `dir`.
fn context_sex_model(dir: &std::path::Path) -> std::path::PathBuf {
    tch::manual_seed(11);
    let architecture =
        FaceNetConfig { channels: vec![4, 8, 8, 8, 8], hidden: 8, input_size: 64, ..FaceNetConfig::sex_context() };
    let vs = nn::VarStore::new(Device::Cpu);
    let mut net = FaceNet::new(&vs.root(), &architecture);
    net.set_input_stats(120.0, 60.0);
    let weights = dir.join("face_sex.safetensors");
    vs.save(&weights).unwrap();
    ModelCard {
        name: "face_sex".into(),
        description: "test model".into(),
        classes: vec!["female".into(), "male".into()],
        input: InputSpec::grey_context(64, 0.3, 120.0, 60.0, "test"),
        architecture,
        params: 0,
        trained_on: String::new(),
        metrics: serde_json::json!({}),
        calibration: None,
        mixed: None,
        train_command: String::new(),
        eval_command: String::new(),
    }
    .save(&card_path(&weights))
    .unwrap();
    weights
}

#[test]
fn the_sex_network_reads_the_crop_its_card_names() {
    let dir = tempfile::tempdir().unwrap();
    let weights = context_sex_model(dir.path());
    let mut config = AnalyzerConfig::with_models_dir(&root().join("models"));
    config.face_sex_model = weights.clone();
    // The network's own answer, not blended with the face sex head.
    config.face_sex_head_model = None;
    let analyzer = Analyzer::load(config).expect("models with a context sex model");
    let by_hand = LoadedFaceModel::load(&weights).unwrap();
    let spec = by_hand.card.input.crop();
    assert_eq!(spec, CropSpec { size: 64, margin: 0.3 });

    let bytes = fixture("group.jpg");
    let image = decode_image(&bytes, ImageLimits::default()).unwrap();
    let analysis = analyzer.analyze_image_bytes(&bytes).expect("the group photo's faces");
    assert_eq!(analysis.faces.len(), 3);
    for face in &analysis.faces {
        let crop = crop_face_as(&image.gray, face.bbox, spec).into_raw();
        let expected = by_hand.net.predict_proba(&Tensor::from_slice(&crop).view([1, 1, 64, 64]));
        for (k, p) in face.sex.probabilities.iter().enumerate() {
            let want = expected.double_value(&[0, k as i64]);
            assert!(
                (f64::from(p.probability) - want).abs() < 1e-4,
                "face {:?}: {} vs {want}",
                face.bbox,
                p.probability
            );
        }
        // The emotion network still gets its own 48x48 crop of the box.
        assert_eq!(face.crop.len(), 48 * 48);
    }

    // A whole image given as the face is read as it is, without a margin.
    let whole = analyzer.analyze_image_bytes_with(&bytes, FaceSource::WholeImage).expect("whole image");
    let face = &whole.faces[0];
    let crop = crop_face_as(&image.gray, face.bbox, CropSpec { margin: 0.0, ..spec }).into_raw();
    let expected = by_hand.net.predict_proba(&Tensor::from_slice(&crop).view([1, 1, 64, 64]));
    let got = f64::from(face.sex.probabilities[0].probability);
    assert!((got - expected.double_value(&[0, 0])).abs() < 1e-4, "whole image: {got}");
}
