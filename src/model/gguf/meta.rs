//! GGUF metadata from the command line (`--gguf-meta KEY=VALUE`) and from another GGUF
//! file (`--gguf-meta-from`).
//!
//! Typing rule for `KEY=VALUE`: `true` / `false` are a bool; an integer is a `u32` (an
//! `i32` if negative; `u64` / `i64` when it does not fit 32 bits); a number with a `.` or
//! an exponent is an `f32`; a value in double quotes, or anything else, is a string.
//! `KEY:TYPE=VALUE` forces the type, `TYPE` one of `u8 i8 u16 i16 u32 i32 u64 i64 f32 f64
//! bool str`. llama.cpp checks the types of the keys it reads (`<arch>.context_length`
//! is a `u32`, `<arch>.rope.freq_base` an `f32`), which the default rule produces.

use crate::error::{Error, Result};
use crate::model::gguf::{GgufFile, GgufValue};

/// Keys [`copyable_metadata`] leaves out: they describe the source file's layout and
/// quantization, not the model.
pub const NOT_COPIED: [&str; 3] = [
    "general.alignment",
    "general.file_type",
    "general.quantization_version",
];

fn bad(arg: &str, why: impl std::fmt::Display) -> Error {
    Error::param("gguf-meta", format!("`{arg}`: {why}"))
}

/// Parses one `KEY=VALUE` or `KEY:TYPE=VALUE` argument (see the module documentation for
/// the typing rule).
///
/// # Errors
/// [`Error::InvalidParameter`] (`gguf-meta`) naming the argument: no `=`, an empty key, an
/// unknown `TYPE`, or a value that does not parse as the forced type.
pub fn parse_meta_arg(arg: &str) -> Result<(String, GgufValue)> {
    let (lhs, value) = arg
        .split_once('=')
        .ok_or_else(|| bad(arg, "expected KEY=VALUE (or KEY:TYPE=VALUE)"))?;
    let (key, ty) = match lhs.split_once(':') {
        Some((k, t)) => (k.trim(), Some(t.trim())),
        None => (lhs.trim(), None),
    };
    if key.is_empty() || key.chars().any(char::is_whitespace) {
        return Err(bad(arg, "the key must be non-empty, without spaces"));
    }
    let v = match ty {
        Some(t) => typed(arg, t, value)?,
        None => inferred(value),
    };
    Ok((key.to_string(), v))
}

fn typed(arg: &str, ty: &str, v: &str) -> Result<GgufValue> {
    fn num<T: std::str::FromStr>(arg: &str, ty: &str, v: &str) -> Result<T> {
        v.trim()
            .parse()
            .map_err(|_| bad(arg, format!("`{v}` is not a valid {ty}")))
    }
    Ok(match ty {
        "u8" => GgufValue::U8(num(arg, ty, v)?),
        "i8" => GgufValue::I8(num(arg, ty, v)?),
        "u16" => GgufValue::U16(num(arg, ty, v)?),
        "i16" => GgufValue::I16(num(arg, ty, v)?),
        "u32" => GgufValue::U32(num(arg, ty, v)?),
        "i32" => GgufValue::I32(num(arg, ty, v)?),
        "u64" => GgufValue::U64(num(arg, ty, v)?),
        "i64" => GgufValue::I64(num(arg, ty, v)?),
        "f32" => GgufValue::F32(num(arg, ty, v)?),
        "f64" => GgufValue::F64(num(arg, ty, v)?),
        "bool" => GgufValue::Bool(num(arg, ty, v)?),
        "str" | "string" => GgufValue::String(v.to_string()),
        other => {
            return Err(bad(
                arg,
                format!(
                    "unknown type `{other}` (u8, i8, u16, i16, u32, i32, u64, i64, f32, f64, bool, str)"
                ),
            ));
        }
    })
}

fn inferred(v: &str) -> GgufValue {
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        return GgufValue::String(v[1..v.len() - 1].to_string());
    }
    match v {
        "true" => return GgufValue::Bool(true),
        "false" => return GgufValue::Bool(false),
        _ => {}
    }
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(x) = v.parse::<u32>() {
            return GgufValue::U32(x);
        }
        if let Ok(x) = v.parse::<i32>() {
            return GgufValue::I32(x);
        }
        if let Ok(x) = v.parse::<u64>() {
            return GgufValue::U64(x);
        }
        if let Ok(x) = v.parse::<i64>() {
            return GgufValue::I64(x);
        }
    }
    let numeric = digits
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'));
    if numeric && let Ok(x) = v.parse::<f32>() {
        return GgufValue::F32(x);
    }
    GgufValue::String(v.to_string())
}

/// The metadata of `f` worth copying into another file: everything except
/// [`NOT_COPIED`].
pub fn copyable_metadata(f: &GgufFile) -> Vec<(String, GgufValue)> {
    f.metadata
        .iter()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// Adds `entries` to `meta` in order; an entry whose key is already there replaces that
/// value in place.
pub fn merge_metadata(meta: &mut Vec<(String, GgufValue)>, entries: Vec<(String, GgufValue)>) {
    for (k, v) in entries {
        match meta.iter_mut().find(|(mk, _)| *mk == k) {
            Some(slot) => slot.1 = v,
            None => meta.push((k, v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_rule() {
        let p = |s: &str| parse_meta_arg(s).unwrap().1;
        assert_eq!(p("a=llama"), GgufValue::String("llama".into()));
        assert_eq!(p("a=2048"), GgufValue::U32(2048));
        assert_eq!(p("a=-3"), GgufValue::I32(-3));
        assert_eq!(p("a=5000000000"), GgufValue::U64(5_000_000_000));
        assert_eq!(p("a=10000.0"), GgufValue::F32(10000.0));
        assert_eq!(p("a=1e-5"), GgufValue::F32(1e-5));
        assert_eq!(p("a=true"), GgufValue::Bool(true));
        assert_eq!(p("a=\"42\""), GgufValue::String("42".into()));
        assert_eq!(p("a=1.2.3"), GgufValue::String("1.2.3".into()));
        assert_eq!(p("a=e5"), GgufValue::String("e5".into()));
        assert_eq!(p("a:u64=7"), GgufValue::U64(7));
        assert_eq!(p("a:str=7"), GgufValue::String("7".into()));
        assert_eq!(p("a:f64=0.5"), GgufValue::F64(0.5));
        for bad in ["noequals", "=x", "a:u8=300", "a:weird=1", "a b=1"] {
            let e = parse_meta_arg(bad).unwrap_err().to_string();
            assert!(e.contains("gguf-meta") && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn merge_replaces_in_place() {
        let mut m = vec![
            ("x".to_string(), GgufValue::U32(1)),
            ("y".to_string(), GgufValue::U32(2)),
        ];
        merge_metadata(
            &mut m,
            vec![
                ("x".into(), GgufValue::U32(9)),
                ("z".into(), GgufValue::U32(3)),
            ],
        );
        assert_eq!(
            m,
            vec![
                ("x".to_string(), GgufValue::U32(9)),
                ("y".to_string(), GgufValue::U32(2)),
                ("z".to_string(), GgufValue::U32(3)),
            ]
        );
    }
}
