//! `vecquant quantize-model`: quantize every 2-D tensor of a weight file, write the
//! result (.vq, .gguf or dequantized .safetensors) and an error report.

use std::path::PathBuf;

use clap::Args;
use vecquant::model::options::{self, GivenOptions, Method};
use vecquant::model::pipeline::check_calibration;
use vecquant::model::{self, GranularityKind, gguf, quantize_model, quantize_model_calibrated};
use vecquant::{Error, Result};

#[derive(Args)]
pub struct QuantizeModelArgs {
    /// Input weights (.safetensors with f32/f16/bf16 tensors, or a 2-D .npy).
    #[arg(long)]
    weights: PathBuf,
    /// The scheme (every option below says which schemes read it; an option the scheme
    /// does not read is an error):
    ///
    /// absmax, zeropoint: --bits 2..=8 (default 8), --granularity (default row at 8
    ///   bits, group of 128 below), --group, --rounding, --clip, --seed;
    /// nf4, nf4-dq, fp4: 4-bit blocks, --group = block size (default 64);
    /// fp8-e4m3, fp8-e5m2: --granularity (default row), --group;
    /// f16, bf16: casts, no options;
    /// kmeans: --bits 1..=8 (default 4), --granularity tensor|row (default tensor), --seed;
    /// q8_0, q4_0, q4_1, q5_0, q4_k, q6_k: GGUF blocks, no options;
    /// gptq: --calib, --bits 2..=8 (default 4), --group (default 128) or --granularity
    ///   row, --act-order, --damp (default 0.01);
    /// spqr: --calib, --bits 2..=8 (default 3), --group (default 16), --act-order, --damp;
    /// smoothquant: --calib, --alpha (default 0.5);
    /// llm-int8: --calib, --threshold (default 6.0).
    #[arg(long, verbatim_doc_comment)]
    scheme: String,
    /// Scale sharing: tensor, row (output channel) or group (of --group weights along
    /// the input dimension). absmax/zeropoint, fp8 (default row; absmax/zeropoint below
    /// 8 bits: group), kmeans (tensor or row; default tensor), gptq (row or group).
    #[arg(long)]
    granularity: Option<GranularityKind>,
    /// Group size (implies --granularity group; default 128; gptq 128, spqr 16); block
    /// size for nf4/nf4-dq/fp4 (default 64).
    #[arg(long)]
    group: Option<usize>,
    /// Bits: absmax/zeropoint 2..=8 (default 8), kmeans 1..=8 (default 4), gptq 2..=8
    /// (default 4), spqr 2..=8 (default 3).
    #[arg(long)]
    bits: Option<u32>,
    /// absmax/zeropoint rounding: nearest, floor, ceil or stochastic (default nearest).
    #[arg(long)]
    rounding: Option<String>,
    /// absmax/zeropoint range: minmax, percentile:P (e.g. percentile:99.9), mse or kl
    /// (default minmax).
    #[arg(long)]
    clip: Option<String>,
    /// Seed for kmeans and for --rounding stochastic (default 42).
    #[arg(long)]
    seed: Option<u64>,
    /// Calibration activations (.safetensors): for each weight, a tensor with the same
    /// name holding that layer's inputs (tokens × in_features). Required by gptq,
    /// spqr, smoothquant and llm-int8 (and read by no other scheme); the last 10 % of
    /// the rows are held out to measure the output error. At least one name must match
    /// a weight.
    #[arg(long)]
    calib: Option<PathBuf>,
    /// gptq/spqr: quantize columns by decreasing Hessian diagonal.
    #[arg(long)]
    act_order: bool,
    /// gptq/spqr dampening, a fraction of the mean Hessian diagonal (default 0.01).
    #[arg(long)]
    damp: Option<f64>,
    /// smoothquant migration strength α in [0, 1] (default 0.5).
    #[arg(long)]
    alpha: Option<f32>,
    /// llm-int8 outlier threshold on |activation| (default 6.0).
    #[arg(long)]
    threshold: Option<f32>,
    /// .gguf output: a metadata entry KEY=VALUE (repeatable; later wins). The value's
    /// type: true/false -> bool; an integer -> u32 (i32 if negative, u64/i64 if it does
    /// not fit); a number with `.` or an exponent -> f32; anything else (or "quoted") ->
    /// string. Force a type with KEY:TYPE=VALUE, TYPE one of u8 i8 u16 i16 u32 i32 u64
    /// i64 f32 f64 bool str. llama.cpp needs at least general.architecture=ARCH and
    /// ARCH.context_length, ARCH.embedding_length, ARCH.block_count (and the
    /// architecture's other hyperparameters), tensors named as it expects
    /// (blk.N.attn_q.weight, token_embd.weight, ...) and a tokenizer (tokenizer.ggml.*),
    /// which vecquant does not write: copy it with --gguf-meta-from.
    #[arg(long, value_name = "KEY=VALUE")]
    gguf_meta: Vec<String>,
    /// .gguf output: copy every metadata entry of this GGUF file (architecture,
    /// hyperparameters, tokenizer) except general.alignment, general.file_type and
    /// general.quantization_version; --gguf-meta entries override them.
    #[arg(long, value_name = "FILE.gguf")]
    gguf_meta_from: Option<PathBuf>,
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

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(a: QuantizeModelArgs) -> Result<()> {
    // Every option is checked before any file is read (issue 17, items 13 and 16).
    let method = options::parse_method(
        &a.scheme,
        &GivenOptions {
            bits: a.bits,
            granularity: a.granularity,
            group: a.group,
            rounding: a.rounding.clone(),
            clip: a.clip.clone(),
            seed: a.seed,
            calib: a.calib.is_some(),
            act_order: a.act_order,
            damp: a.damp,
            alpha: a.alpha,
            threshold: a.threshold,
        },
    )?;
    let is_gguf = a.out.extension().and_then(|e| e.to_str()) == Some("gguf");
    let mut meta = Vec::new();
    if !is_gguf && (!a.gguf_meta.is_empty() || a.gguf_meta_from.is_some()) {
        let opt = if a.gguf_meta.is_empty() {
            "gguf-meta-from"
        } else {
            "gguf-meta"
        };
        return Err(Error::param(
            opt,
            format!(
                "--{opt} sets GGUF metadata, but --out {} is not a .gguf file",
                a.out.display()
            ),
        ));
    }
    let parsed: Vec<_> = a
        .gguf_meta
        .iter()
        .map(|s| gguf::parse_meta_arg(s))
        .collect::<Result<_>>()?;
    let inputs: Vec<&std::path::Path> = std::iter::once(a.weights.as_path())
        .chain(a.calib.as_deref())
        .chain(a.gguf_meta_from.as_deref())
        .collect();
    super::paths::check_inputs(&inputs)?;
    super::paths::check_output("--out", &a.out, &inputs)?;
    if let Some(r) = &a.report {
        super::paths::check_output("--report", r, &inputs)?;
        super::paths::check_distinct(("--out", &a.out), ("--report", r))?;
    }
    if let Some(from) = &a.gguf_meta_from {
        gguf::merge_metadata(&mut meta, gguf::copyable_metadata(&gguf::read_gguf(from)?));
    }
    gguf::merge_metadata(&mut meta, parsed);
    let calib = match (&method, &a.calib) {
        (Method::Calibrated(_), Some(p)) => model::io::read_safetensors(p)?,
        _ => Vec::new(),
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
    let calibrated = match (&method, &a.calib) {
        (Method::Calibrated(_), Some(p)) => Some((check_calibration(&tensors, &calib, p)?, p)),
        _ => None,
    };
    let (q, rep) = match &method {
        Method::Plain(s) => quantize_model(&tensors, s, on_tensor)?,
        Method::Calibrated(m) => quantize_model_calibrated(&tensors, m, &calib, on_tensor)?,
    };
    bar.finish_and_clear();
    if is_gguf {
        q.save_gguf_with(&a.out, &meta)?;
    } else {
        q.save(&a.out)?;
    }
    if let Some(r) = &a.report {
        rep.write(r)?;
    }
    let t = &rep.total;
    for r in rep.tensors.iter().filter(|r| r.scheme != "passthrough") {
        if let Some(n) = &r.note {
            eprintln!("note: {}: {n}", r.name);
        }
    }
    if let Some(((matched, eligible), p)) = calibrated {
        outln!(
            "calibrated {matched} of {eligible} tensors from {} (the others: round-to-nearest)",
            p.display()
        );
    }
    let outs: Vec<(f64, f64)> = rep
        .tensors
        .iter()
        .filter_map(|r| Some((r.rel_output_error?, r.rtn_rel_output_error?)))
        .collect();
    if !outs.is_empty() {
        outln!(
            "held-out output error (last 10 % of calibration rows): median {:.5} vs round-to-nearest {:.5} over {} tensors",
            median(outs.iter().map(|o| o.0).collect()),
            median(outs.iter().map(|o| o.1).collect()),
            outs.len()
        );
    }
    outln!(
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
