//! Weighted logistic regression by Newton's method: the fit behind the sex
//! heads on pretrained embeddings (voice: [`super::voice_sex`]; face:
//! [`super::face_sex_head`]).

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use crate::model::LogisticHead;

/// A fitted head's numbers: standardisation and logistic weights.
#[derive(Debug)]
pub struct LogisticFit {
    pub mean: Tensor,
    pub std: Tensor,
    /// `[256]` weights and the bias.
    pub weights: Tensor,
    pub bias: f64,
}

impl LogisticFit {
    /// Probability of male for `[N, 256]` embeddings.
    pub fn male_probability(&self, x: &Tensor) -> Tensor {
        (((x - &self.mean) / &self.std).matmul(&self.weights) + self.bias).sigmoid()
    }
}

/// Weighted L2-penalised logistic regression by Newton's method on the
/// standardised `x` (`[N, D]`), labels 0/1, sample weights; the penalty is
/// on the weighted mean loss and spares the bias.
pub fn fit_logistic(x: &Tensor, y: &[f32], sample_weights: &[f32], penalty: f64) -> Result<LogisticFit> {
    let n = x.size()[0];
    if n == 0 || y.len() as i64 != n || sample_weights.len() as i64 != n {
        bail!("nothing to fit, or labels and weights that do not match the windows");
    }
    let mean = x.mean_dim([0i64].as_slice(), false, Kind::Float);
    let std = x.std_dim([0i64].as_slice(), false, false).clamp_min(1e-6);
    let z = (x - &mean) / &std;
    let d = z.size()[1];
    let design = Tensor::cat(&[z, Tensor::ones([n, 1], (Kind::Float, Device::Cpu))], 1).to_kind(Kind::Double);
    let y = Tensor::from_slice(y).to_kind(Kind::Double);
    let total: f64 = sample_weights.iter().map(|&w| f64::from(w)).sum();
    let sw = Tensor::from_slice(sample_weights).to_kind(Kind::Double) / total;
    let mut ridge = vec![penalty; d as usize];
    ridge.push(0.0);
    let ridge = Tensor::from_slice(&ridge);
    let mut beta = Tensor::zeros([d + 1], (Kind::Double, Device::Cpu));
    for _ in 0..50 {
        let p = design.matmul(&beta).sigmoid();
        let gradient = design.tr().matmul(&(&sw * (&p - &y))) + &ridge * &beta;
        let curvature: Tensor = &sw * &p * (1.0 - &p);
        let hessian = (design.tr() * curvature.unsqueeze(0)).matmul(&design)
            + ridge.diag(0)
            + Tensor::eye(d + 1, (Kind::Double, Device::Cpu)) * 1e-9;
        let step = Tensor::linalg_solve(&hessian, &gradient.unsqueeze(1), true).squeeze_dim(1);
        beta -= &step;
        if step.abs().max().double_value(&[]) < 1e-8 {
            break;
        }
    }
    let beta = beta.to_kind(Kind::Float);
    Ok(LogisticFit { mean, std, weights: beta.narrow(0, 0, d), bias: beta.double_value(&[d]) })
}

impl LogisticFit {
    /// Copies the fitted numbers into a head's variables.
    pub fn write_to(&self, head: &mut LogisticHead) {
        tch::no_grad(|| {
            head.mean.copy_(&self.mean);
            head.std.copy_(&self.std);
            head.linear.ws.copy_(&self.weights.unsqueeze(0));
            if let Some(b) = head.linear.bs.as_mut() {
                b.copy_(&Tensor::from_slice(&[self.bias as f32]));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newton_logistic_separates_and_respects_the_penalty() {
        // Two clusters along the first axis, noise elsewhere.
        let noise = Tensor::randn([400, 8], (Kind::Float, Device::Cpu));
        let y: Vec<f32> = (0..400).map(|i| (i % 2) as f32).collect();
        let shift = Tensor::from_slice(&y.iter().map(|&v| 4.0 * v - 2.0).collect::<Vec<f32>>()).view([400, 1]);
        let x = Tensor::cat(&[noise.narrow(1, 0, 1) + shift, noise.narrow(1, 1, 7)], 1);
        let weights = vec![1.0f32; 400];
        let loose = fit_logistic(&x, &y, &weights, 1e-4).unwrap();
        let tight = fit_logistic(&x, &y, &weights, 1.0).unwrap();
        let p = Vec::<f32>::try_from(loose.male_probability(&x)).unwrap();
        let right = p.iter().zip(&y).filter(|(p, y)| (**p > 0.5) == (**y > 0.5)).count();
        assert!(right >= 380, "{right} of 400");
        let w0 = |f: &LogisticFit| f.weights.double_value(&[0]);
        assert!(w0(&loose) > 0.0 && w0(&tight).abs() < w0(&loose).abs());
    }
}
