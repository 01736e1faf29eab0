//! `vecquant quantize-model`: quantize every 2-D tensor of a weight file, write the
//! result (.vq, .gguf or dequantized .safetensors) and an error report.

use std::path::PathBuf;

use clap::Args;
use vecquant::model::{
    self, CalibMethod, GranularityKind, Scheme, SchemeOptions, quantize_model,
    quantize_model_calibrated,
};
use vecquant::{Error, Result};

#[derive(Args)]
pub struct QuantizeModelArgs {
    /// Input weights (.safetensors with f32/f16/bf16 tensors, or a 2-D .npy).
    #[arg(long)]
    weights: PathBuf,
    /// absmax, zeropoint, nf4, nf4-dq, fp4, fp8-e4m3, fp8-e5m2, f16, bf16, kmeans,
    /// q8_0, q4_0, q4_1, q4_k, q6_k.
    #[arg(long)]
    scheme: String,
    /// Scale sharing: tensor, row (output channel) or group (of --group weights along
    /// the input dimension). Default: row for 8 bits, group for fewer; kmeans: tensor.
    #[arg(long)]
    granularity: Option<GranularityKind>,
    /// Group size for --granularity group (default 128); block size for nf4/fp4
    /// (default 64).
    #[arg(long)]
    group: Option<usize>,
    /// Bits for absmax/zeropoint (8, 4, 3, 2; default 8) and kmeans (1..=8; default 4).
    #[arg(long)]
    bits: Option<u32>,
    /// nearest, floor, ceil or stochastic.
    #[arg(long, default_value = "nearest")]
    rounding: String,
    /// Range: minmax, percentile:P (e.g. percentile:99.9), mse or kl.
    #[arg(long, default_value = "minmax")]
    clip: String,
    /// Seed for k-means and stochastic rounding.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Calibration activations (.safetensors): for each weight, a tensor with the same
    /// name holding that layer's inputs (tokens × in_features). Required by gptq,
    /// spqr, smoothquant and llm-int8; the last 10 % of the rows are held out to
    /// measure the output error.
    #[arg(long)]
    calib: Option<PathBuf>,
    /// GPTQ/SpQR: quantize columns by decreasing Hessian diagonal.
    #[arg(long)]
    act_order: bool,
    /// GPTQ/SpQR dampening (fraction of the mean Hessian diagonal).
    #[arg(long, default_value_t = 0.01)]
    damp: f64,
    /// SmoothQuant migration strength α.
    #[arg(long, default_value_t = 0.5)]
    alpha: f32,
    /// LLM.int8 outlier threshold on |activation|.
    #[arg(long, default_value_t = 6.0)]
    threshold: f32,
    /// Output file (.vq, .gguf or .safetensors).
    #[arg(long)]
    out: PathBuf,
    /// Report file (.json or .md); the summary is always printed.
    #[arg(long)]
    report: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// A scheme applied weight by weight, or a method that also reads each layer's inputs.
enum Method {
    Plain(Scheme),
    Calibrated(CalibMethod),
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(a: QuantizeModelArgs) -> Result<()> {
    let inputs: Vec<&std::path::Path> = std::iter::once(a.weights.as_path())
        .chain(a.calib.as_deref())
        .collect();
    super::paths::check_inputs(&inputs)?;
    super::paths::check_output("--out", &a.out, &inputs)?;
    if let Some(r) = &a.report {
        super::paths::check_output("--report", r, &inputs)?;
        super::paths::check_distinct(("--out", &a.out), ("--report", r))?;
    }
    let opts = SchemeOptions {
        bits: a.bits,
        granularity: a.granularity,
        group: a.group,
        rounding: model::parse_rounding(&a.rounding, a.seed)?,
        clip: model::parse_clip(&a.clip)?,
        seed: a.seed,
    };
    let method =
        match model::parse_calibrated(&a.scheme, &opts, a.act_order, a.damp, a.alpha, a.threshold)
            .transpose()?
        {
            Some(m) => Method::Calibrated(m),
            None => Method::Plain(Scheme::parse(&a.scheme, &opts)?),
        };
    let calib = match (&method, &a.calib) {
        (Method::Calibrated(_), Some(p)) => model::io::read_safetensors(p)?,
        (Method::Calibrated(_), None) => {
            return Err(Error::param(
                "calib",
                format!(
                    "scheme `{}` needs --calib CALIB.safetensors (layer inputs per weight name)",
                    a.scheme
                ),
            ));
        }
        (Method::Plain(_), _) => Vec::new(),
    };
    let tensors = model::io::read_weights(&a.weights)?;
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(tensors.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} tensors  {elapsed_precise}  {msg}",
            )
            .expect("a constant, valid template"),
        );
        b
    };
    let on_tensor = |i: usize, _: usize, name: &str| {
        bar.set_position(i as u64);
        bar.set_message(name.to_string());
    };
    let (q, rep) = match &method {
        Method::Plain(s) => quantize_model(&tensors, s, on_tensor)?,
        Method::Calibrated(m) => quantize_model_calibrated(&tensors, m, &calib, on_tensor)?,
    };
    bar.finish_and_clear();
    q.save(&a.out)?;
    if let Some(r) = &a.report {
        rep.write(r)?;
    }
    let t = &rep.total;
    for r in rep.tensors.iter().filter(|r| r.scheme != "passthrough") {
        if let Some(n) = &r.note {
            eprintln!("note: {}: {n}", r.name);
        }
    }
    let outs: Vec<(f64, f64)> = rep
        .tensors
        .iter()
        .filter_map(|r| Some((r.rel_output_error?, r.rtn_rel_output_error?)))
        .collect();
    if !outs.is_empty() {
        println!(
            "held-out output error (last 10 % of calibration rows): median {:.5} vs round-to-nearest {:.5} over {} tensors",
            median(outs.iter().map(|o| o.0).collect()),
            median(outs.iter().map(|o| o.1).collect()),
            outs.len()
        );
    }
    println!(
        "{}: {} tensors ({} quantized, {} passed through) with {}: {:.4} bits/weight, {} -> {} bytes ({:.2}x), median rel. error {:.5}, {:.2} s -> {}",
        a.weights.display(),
        t.tensors,
        t.quantized,
        t.passthrough,
        rep.scheme,
        t.bits_per_weight,
        t.bytes_before,
        t.bytes_after,
        t.compression_ratio,
        median(
            rep.tensors
                .iter()
                .filter(|r| r.scheme != "passthrough")
                .map(|r| r.rel_weight_error)
                .collect()
        ),
        t.seconds,
        a.out.display()
    );
    Ok(())
}
