//! Parsing spec strings into the typed tree: the component lexer and the tree rules.

use std::fmt;
use std::str::FromStr;

use super::*;

impl FromStr for IndexSpec {
    type Err = Error;

    /// Parses a spec string (see the module table): checks the syntax, then
    /// [`IndexSpec::validate`]'s rules. The error names the rule that failed and lists
    /// the accepted forms.
    fn from_str(s: &str) -> Result<Self> {
        let spec = parse_tree(s).map_err(|m| spec_error(s.trim(), m))?;
        spec.rule().map_err(|m| spec_error(s.trim(), m))?;
        Ok(spec)
    }
}

/// An [`Error::Spec`] for `spec` breaking `rule`, with the accepted forms.
pub(super) fn spec_error(spec: &str, rule: impl fmt::Display) -> Error {
    Error::Spec {
        spec: spec.to_string(),
        message: format!("{rule}; accepted forms: {ACCEPTED}"),
    }
}

/// The divisors of `n ≥ 1`, ascending (pairs `i`, `n / i` up to `√n`).
pub(super) fn divisors(n: usize) -> Vec<usize> {
    let (mut small, mut large) = (Vec::new(), Vec::new());
    let mut i = 1;
    while i <= n / i {
        if n.is_multiple_of(i) {
            small.push(i);
            if i != n / i {
                large.push(n / i);
            }
        }
        i += 1;
    }
    small.extend(large.into_iter().rev());
    small
}

/// One comma-separated part of a spec, syntax checked, ranges not yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Component {
    Flat,
    Sq(ScalarSpec),
    Pq(PqParams),
    RaBitQ(u8),
    /// `RaBitQfs[{b}]`.
    RaBitQFs(u8),
    Opq(usize),
    Ivf(usize),
    Hnsw(usize),
}

/// The accepted SQ names, for the unknown-variant error.
fn sq_names() -> String {
    ScalarSpec::all()
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The unsigned decimal after a keyword (`what` names it in errors, `example` shows a
/// valid component). Only ASCII digits: no sign, no spaces.
fn number(
    digits: &str,
    component: &str,
    what: &str,
    example: &str,
) -> std::result::Result<usize, String> {
    if digits.is_empty() {
        return Err(format!("`{component}` needs {what}, e.g. {example}"));
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{component}`: {what} must be a decimal number, not `{digits}` (e.g. {example})"
        ));
    }
    digits
        .parse()
        .map_err(|_| format!("`{component}`: {what} {digits} is too large"))
}

/// Parses one trimmed component.
pub(super) fn parse_component(c: &str) -> std::result::Result<Component, String> {
    // ASCII lower-casing keeps byte offsets, so `c[i..]` and `l[i..]` line up.
    let l = c.to_ascii_lowercase();
    if l == "flat" {
        return Ok(Component::Flat);
    }
    if let Some(tail) = l.strip_prefix("rabitq") {
        let fs = tail.starts_with("fs");
        let rest = &c[if fs { 8 } else { 6 }..];
        let make = if fs {
            Component::RaBitQFs
        } else {
            Component::RaBitQ
        };
        if rest.is_empty() {
            return Ok(make(1));
        }
        let b = number(rest, c, "b (bits per dimension, 1..=9)", "RaBitQ4")?;
        return u8::try_from(b)
            .ok()
            .filter(|b| (1..=crate::quant::rabitq::MAX_BITS).contains(b))
            .map(make)
            .ok_or_else(|| {
                format!(
                    "`{c}`: b (bits per dimension) must be 1..=9: RaBitQ is 1 bit, RaBitQ2 … \
                     RaBitQ9 add extra bits"
                )
            });
    }
    if l.starts_with("opq") {
        return number(&c[3..], c, "OPQ's M", "OPQ16,PQ16").map(Component::Opq);
    }
    if l.starts_with("pq") {
        let rest = &c[2..];
        let x = rest.find(['x', 'X']).unwrap_or(rest.len());
        let nbits = match rest[x..].to_ascii_lowercase().as_str() {
            "" => 8,
            "x4fs" => 4,
            _ => {
                return Err(format!(
                    "`{c}`: unknown PQ suffix `{}`; PQ{{M}} has 8-bit codes, PQ{{M}}x4fs 4-bit \
                     fast-scan codes",
                    &rest[x..]
                ));
            }
        };
        let m = number(&rest[..x], c, "PQ's M", "PQ16")?;
        return Ok(Component::Pq(PqParams { m, nbits }));
    }
    if let Some(rest) = l.strip_prefix("sq") {
        let digits = rest.len()
            - rest
                .trim_start_matches(|ch: char| ch.is_ascii_digit())
                .len();
        let bits = match &rest[..digits] {
            "8" => 8,
            "4" => 4,
            "" => {
                return Err(format!(
                    "`{c}` needs a bit width: SQ8 or SQ4 (then a variant); the scalar \
                     quantizers are {}",
                    sq_names()
                ));
            }
            b => {
                return Err(format!(
                    "`{c}`: a scalar quantizer has 8 or 4 bits per dimension, not {b}; the \
                     scalar quantizers are {}",
                    sq_names()
                ));
            }
        };
        let variant = SqVariant::from_suffix(&rest[digits..]).ok_or_else(|| {
            format!(
                "`{c}`: unknown scalar-quantizer variant `{}`; the scalar quantizers are {}",
                &c[2 + digits..],
                sq_names()
            )
        })?;
        return Ok(Component::Sq(ScalarSpec { bits, variant }));
    }
    if l.starts_with("ivf") {
        return number(&c[3..], c, "a list count (nlist)", "IVF1024,PQ16").map(Component::Ivf);
    }
    if l.starts_with("hnsw") {
        return number(&c[4..], c, "HNSW's M", "HNSW32").map(Component::Hnsw);
    }
    Err(format!(
        "unknown index type `{c}` (the keywords are Flat, SQ, PQ, OPQ, IVF, HNSW and RaBitQ)"
    ))
}

/// Parses the syntax of a whole spec into a tree (ranges are checked afterwards by
/// [`IndexSpec::rule`]).
fn parse_tree(s: &str) -> std::result::Result<IndexSpec, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty spec".into());
    }
    let texts: Vec<&str> = s.split(',').map(str::trim).collect();
    if texts.iter().any(|t| t.is_empty()) {
        return Err("empty component: two commas in a row, or a comma at either end".into());
    }
    let parts = texts
        .iter()
        .map(|t| parse_component(t))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    use Component as C;
    let inner_of = |c: Component, t: &str, of: &str| match c {
        C::Flat => Ok(InnerQuantizer::Flat),
        C::Sq(s) => Ok(InnerQuantizer::Scalar(s)),
        C::Pq(p) => Ok(InnerQuantizer::Product(p)),
        C::RaBitQ(b) => Ok(InnerQuantizer::RaBitQ(b)),
        C::RaBitQFs(b) => Ok(InnerQuantizer::RaBitQFs(b)),
        C::Opq(_) if of == "IVF" => Err(format!(
            "OPQ comes before IVF, as in FAISS: OPQ{{M}},IVF{{nlist}},PQ{{M}}, not `{t}` after IVF"
        )),
        _ => Err(format!(
            "{of}'s inner quantizer must be Flat, SQ…, RaBitQ[{{b}}] or {}, not `{t}`",
            if of == "IVF" { "PQ{M}[x4fs]" } else { "PQ{m}" }
        )),
    };
    let opq_match = |om: usize, p: PqParams| {
        if om == p.m {
            Ok(())
        } else {
            Err(format!("OPQ's M ({om}) must equal PQ's M ({})", p.m))
        }
    };
    // Each head keyword decides how many components its form takes; more is an error.
    let (spec, used) = match parts[0] {
        C::Flat => (IndexSpec::Flat, 1),
        C::Sq(s) => (IndexSpec::Scalar(s), 1),
        C::RaBitQ(b) | C::RaBitQFs(b) => {
            if let Some(C::Ivf(_)) = parts.get(1) {
                return Err(format!(
                    "`{}` comes after IVF, as in FAISS: IVF{{nlist}},{}",
                    texts[0], texts[0]
                ));
            }
            if matches!(parts[0], C::RaBitQFs(_)) {
                (IndexSpec::RaBitQFs(b), 1)
            } else {
                (IndexSpec::RaBitQ(b), 1)
            }
        }
        C::Pq(p) => {
            if let Some(C::Ivf(_)) = parts.get(1) {
                return Err(format!(
                    "`{}` comes after IVF, as in FAISS: IVF{{nlist}},{}",
                    texts[0], texts[0]
                ));
            }
            (IndexSpec::Product { opq: false, pq: p }, 1)
        }
        C::Opq(om) => match parts[1..] {
            [] => {
                return Err(format!(
                    "`{s}` must be followed by PQ{om}, PQ{om}x4fs or IVF{{nlist}},PQ{om}[x4fs]"
                ));
            }
            [C::Pq(p), ..] => {
                opq_match(om, p)?;
                (IndexSpec::Product { opq: true, pq: p }, 2)
            }
            [C::Ivf(_)] => {
                return Err(format!(
                    "`{s}` needs its product quantizer after a comma: {s},PQ{om} or \
                     {s},PQ{om}x4fs"
                ));
            }
            [C::Ivf(nlist), C::Pq(p), ..] => {
                opq_match(om, p)?;
                let inner = InnerQuantizer::Product(p);
                (
                    IndexSpec::Ivf {
                        opq: true,
                        nlist,
                        inner,
                    },
                    3,
                )
            }
            [C::Ivf(_), ..] => {
                return Err(format!(
                    "OPQ learns a rotation for a product quantizer; after OPQ{{M}},IVF{{nlist}} \
                     comes PQ{{M}} or PQ{{M}}x4fs, not `{}`",
                    texts[2]
                ));
            }
            _ => {
                return Err(format!(
                    "OPQ{{M}} must be followed by PQ{{M}}, PQ{{M}}x4fs or \
                     IVF{{nlist}},PQ{{M}}[x4fs], not `{}`",
                    texts[1]
                ));
            }
        },
        C::Ivf(nlist) => match parts.get(1) {
            None => {
                return Err(format!(
                    "`{s}` needs an inner quantizer after a comma: {s},Flat, {s},SQ8, \
                     {s},PQ16 or {s},PQ16x4fs"
                ));
            }
            Some(&c) => {
                let inner = inner_of(c, texts[1], "IVF")?;
                (
                    IndexSpec::Ivf {
                        opq: false,
                        nlist,
                        inner,
                    },
                    2,
                )
            }
        },
        C::Hnsw(m) => match parts.get(1) {
            None => (
                IndexSpec::Hnsw {
                    m,
                    inner: InnerQuantizer::Flat,
                },
                1,
            ),
            Some(&c) => {
                let inner = inner_of(c, texts[1], "HNSW")?;
                (IndexSpec::Hnsw { m, inner }, 2)
            }
        },
    };
    if used < parts.len() {
        return Err(format!(
            "`{}` is a complete spec; nothing may follow it (got `,{}`)",
            texts[..used].join(","),
            texts[used..].join(",")
        ));
    }
    Ok(spec)
}
