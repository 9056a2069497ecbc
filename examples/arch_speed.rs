//! Measures training throughput (faces per second, forward + backward + SGD
//! step) of candidate FaceNet shapes on this machine, to size the network so
//! that training fits the CPU budget.
use emotion_ai::model::{parameter_count, FaceNet, FaceNetConfig};
use std::time::Instant;
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

fn main() {
    let candidates = [vec![32, 64, 128, 256], vec![24, 48, 96, 192], vec![32, 64, 128], vec![48, 96, 192, 384]];
    for channels in candidates {
        let vs = nn::VarStore::new(Device::Cpu);
        let config =
            FaceNetConfig { channels: channels.clone(), hidden: 256, classes: 7, dropout: 0.4, input_size: 48 };
        let net = FaceNet::new(&vs.root(), &config);
        let mut opt = nn::Sgd { momentum: 0.9, dampening: 0.0, wd: 5e-4, nesterov: true }.build(&vs, 0.01).unwrap();
        let xs = Tensor::rand([64, 1, 48, 48], (Kind::Float, Device::Cpu)) * 255.0;
        let ys = Tensor::randint(7, [64], (Kind::Int64, Device::Cpu));
        for _ in 0..3 {
            let l = net.forward_t(&xs, true).cross_entropy_for_logits(&ys);
            opt.backward_step(&l);
        }
        let t = Instant::now();
        let steps = 15;
        for _ in 0..steps {
            let l = net.forward_t(&xs, true).cross_entropy_for_logits(&ys);
            opt.backward_step(&l);
        }
        let per_sec = (steps * 64) as f64 / t.elapsed().as_secs_f64();
        println!(
            "{channels:?} params {} : {per_sec:.0} faces/s, epoch(28.7k) {:.0} s",
            parameter_count(&vs),
            28709.0 / per_sec
        );
    }
}
