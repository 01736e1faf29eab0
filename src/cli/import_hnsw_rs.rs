//! `vecquant import-hnsw-rs`: turn a graph dumped by the hnsw_rs crate into an index file
//! without rebuilding the graph.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use vecquant::index::hnsw::{import_hnsw_rs, read_hnsw_rs_description};
use vecquant::index::spec::BuildOptions;
use vecquant::{Error, Result};

use super::{paths, spinner};

#[derive(Args)]
pub struct ImportHnswRsArgs {
    /// The dump's base name, as given to hnsw_rs's `file_dump(dir, basename)`, optionally
    /// with its folder (`dumps/vectors` reads dumps/vectors.hnsw.graph and
    /// dumps/vectors.hnsw.data). The name of either file is accepted too.
    #[arg(value_name = "BASENAME")]
    basename: PathBuf,
    /// Folder BASENAME is relative to [default: the current folder].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The index to build: HNSW{M} (keeps the vectors) or HNSW{M},{SQ8|SQ4|PQ{m}|RaBitQ…}
    /// (stores codes). M must be the dump's max_nb_connection [default: HNSW{M} with the
    /// dump's M].
    #[arg(long)]
    spec: Option<String>,
    /// Seed for training the quantizer (and for choosing its training sample when there
    /// are more than 1,000,000 vectors).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the original vectors next to the codes so searches can re-rank exactly
    /// (`search --rerank R`).
    #[arg(long)]
    keep_raw: bool,
    /// Output index file (.vq).
    #[arg(long)]
    out: PathBuf,
}

/// Folder and base name of the dump `arg` names (relative to `dir`): a trailing
/// `.hnsw.graph` or `.hnsw.data` is dropped, so either file can be given.
fn split_basename(dir: Option<&Path>, arg: &Path) -> Result<(PathBuf, String)> {
    let name = arg.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        Error::param(
            "BASENAME",
            format!(
                "`{}` does not end in a UTF-8 file name (the dump's base name, e.g. \
                     dumps/vectors for dumps/vectors.hnsw.graph)",
                arg.display()
            ),
        )
    })?;
    let name = [".hnsw.graph", ".hnsw.data"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    let parent = arg.parent().unwrap_or(Path::new(""));
    let folder = match dir {
        Some(d) => d.join(parent),
        None if parent.as_os_str().is_empty() => PathBuf::from("."),
        None => parent.to_path_buf(),
    };
    Ok((folder, name.to_string()))
}

pub fn run(a: ImportHnswRsArgs) -> Result<()> {
    let (dir, name) = split_basename(a.dir.as_deref(), &a.basename)?;
    let graph = dir.join(format!("{name}.hnsw.graph"));
    let data = dir.join(format!("{name}.hnsw.data"));
    paths::check_inputs(&[&graph, &data])?;
    paths::check_output("--out", &a.out, &[&graph, &data])?;
    paths::warn_foreign_extension(&a.out);
    let descr = read_hnsw_rs_description(&dir, &name)?;
    let spec = a
        .spec
        .clone()
        .unwrap_or_else(|| format!("HNSW{}", descr.max_nb_connection));
    let opts = BuildOptions {
        seed: a.seed,
        keep_raw: a.keep_raw,
        ..BuildOptions::default()
    };
    let bar = spinner();
    bar.set_message(format!(
        "importing {} points from {} as {spec}",
        descr.count,
        graph.display()
    ));
    let t0 = Instant::now();
    let index = import_hnsw_rs(&dir, &name, &spec, &opts)?;
    bar.set_message("saving");
    index.save(&a.out)?;
    bar.finish_and_clear();
    let param = |key: &str| {
        index
            .build_params()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .unwrap_or_default()
    };
    let layers = param("layers");
    let layers = layers.split(' ').next().unwrap_or_default();
    let bytes = std::fs::metadata(&a.out)
        .map_err(|e| Error::io(&a.out, e))?
        .len();
    outln!(
        "imported {} vectors (dim {}, {}) from {} as {}: M {}, {layers} levels, {:.2}s, {:.1} MB → {}",
        index.len(),
        index.dim(),
        index.metric(),
        dir.join(&name).display(),
        index.spec(),
        param("M"),
        t0.elapsed().as_secs_f64(),
        bytes as f64 / 1e6,
        a.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basename_forms() {
        let s = |dir: Option<&str>, a: &str| split_basename(dir.map(Path::new), Path::new(a));
        assert_eq!(s(None, "v").unwrap(), (PathBuf::from("."), "v".into()));
        assert_eq!(
            s(None, "d/e/v.hnsw.graph").unwrap(),
            (PathBuf::from("d/e"), "v".into())
        );
        assert_eq!(
            s(Some("/x"), "d/v.hnsw.data").unwrap(),
            (PathBuf::from("/x/d"), "v".into())
        );
        assert!(s(None, "d/..").is_err());
    }
}
