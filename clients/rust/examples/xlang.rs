//! The Rust side of the cross-language test (docs/cross-language.md):
//!
//!   xlang store HOST:PORT NAME [--token T]   store the fixed wide table as NAME
//!   xlang dump  HOST:PORT NAME [--token T]   print NAME's canonical dump, as Polars loads it
//!   xlang copy  HOST:PORT SRC DST [--token T]  load SRC, store what Polars loaded as DST
//!   xlang fixture                            print the fixed table's dump (no server)
//!
//! Build: `cargo build -p polarway-client --example xlang`. Exit status 1 on any error.

use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use polars::prelude::*;
use polars_arrow::bitmap::Bitmap;
use polarway::DistributedClient;

#[tokio::main]
async fn main() {
    if let Err(e) = run(std::env::args().skip(1).collect()).await {
        eprintln!("xlang: {e:#}");
        std::process::exit(1);
    }
}

async fn run(mut args: Vec<String>) -> Result<()> {
    let usage = "usage: xlang store|dump HOST:PORT NAME [--token T]  |  copy HOST:PORT SRC DST [--token T]  |  fixture";
    match args.first().map(String::as_str) {
        Some("fixture") => {
            print!("{}", dump(&wide_table()?)?);
            return Ok(());
        }
        Some("store" | "dump") if args.len() >= 3 => {}
        Some("copy") if args.len() >= 4 => {}
        _ => bail!(usage),
    }
    let dst = if args[0] == "copy" {
        Some(args.remove(3))
    } else {
        None
    };
    let (command, address, name) = (&args[0], &args[1], &args[2]);
    let mut builder = DistributedClient::builder(format!("http://{address}"))
        .timeout(std::time::Duration::from_secs(60));
    match &args[3..] {
        [] => {}
        [flag, token] if flag == "--token" => builder = builder.auth_token(token),
        _ => bail!(usage),
    }
    let client = builder.connect().await?;
    if command != "dump" {
        let df = if dst.is_some() {
            client.load(name).await?
        } else {
            wide_table()?
        };
        let info = client
            .store(dst.as_deref().unwrap_or(name.as_str()), &df)
            .await?;
        println!(
            "{{\"name\":\"{}\",\"version\":{},\"rows\":{}}}",
            info.name, info.version, info.rows
        );
    } else {
        print!("{}", dump(&client.load(name).await?)?);
    }
    Ok(())
}

/// The fixed wide table (docs/cross-language.md), as Polars builds it: one column per type of
/// the shared set, with nulls in every column.
fn wide_table() -> Result<DataFrame> {
    let ints = |name: &str, v: &[Option<i64>], dtype: DataType| {
        Series::new(name.into(), v).strict_cast(&dtype)
    };
    let strs = |name: &str, v: &[Option<&str>]| Series::new(name.into(), v);
    let tokyo = TimeZone::opt_try_new(Some("Asia/Tokyo"))?;
    let columns: Vec<Series> = vec![
        Series::new(
            "i8".into(),
            &[Some(-128i8), Some(127), None, Some(0), Some(-1)],
        ),
        Series::new(
            "i16".into(),
            &[Some(-32768i16), Some(32767), Some(0), None, Some(7)],
        ),
        Series::new(
            "i32".into(),
            &[Some(i32::MIN), Some(i32::MAX), None, Some(0), Some(42)],
        ),
        Series::new(
            "i64".into(),
            &[
                Some(i64::MIN),
                Some(i64::MAX),
                Some(9007199254740993),
                None,
                Some(0),
            ],
        ),
        Series::new(
            "u8".into(),
            &[Some(0u8), Some(255), None, Some(1), Some(200)],
        ),
        Series::new(
            "u16".into(),
            &[Some(0u16), Some(65535), Some(1), None, Some(60000)],
        ),
        Series::new(
            "u32".into(),
            &[Some(0u32), Some(u32::MAX), None, Some(1), Some(4000000000)],
        ),
        Series::new(
            "u64".into(),
            &[
                Some(0u64),
                Some(u64::MAX),
                Some(9007199254740993),
                None,
                Some(1),
            ],
        ),
        Series::new(
            "f32".into(),
            &[
                Some(0.1f32),
                Some(-0.0),
                Some(f32::INFINITY),
                None,
                Some(f32::MIN),
            ],
        ),
        Series::new(
            "f64".into(),
            &[
                Some(0.1f64),
                Some(5e-324),
                Some(f64::NAN),
                None,
                Some(f64::NEG_INFINITY),
            ],
        ),
        Series::new(
            "bool".into(),
            &[Some(true), Some(false), None, Some(true), Some(false)],
        ),
        strs(
            "str",
            &[
                Some("BTC"),
                Some(""),
                None,
                Some("naïve ☃ \"q\" \\ \t\n"),
                Some("ctl \u{1} 🚀"),
            ],
        ),
        // Polars has one string type: this column is written as large_utf8 like "str".
        strs(
            "large_str",
            &[Some("large"), None, Some("日本語"), Some(""), Some("x")],
        ),
        Series::new(
            "bin".into(),
            &[
                Some(&[0u8, 1, 2, 255][..]),
                Some(&[][..]),
                None,
                Some(&[0xde, 0xad, 0xbe, 0xef][..]),
                Some(&[10, 13][..]),
            ],
        ),
        ints(
            "date",
            &[Some(0), Some(-719162), None, Some(2932896), Some(20487)],
            DataType::Int32,
        )?
        .strict_cast(&DataType::Date)?,
        ints(
            "ts_ms",
            &[
                Some(0),
                Some(-1),
                None,
                Some(1770129015123),
                Some(253402300799999),
            ],
            DataType::Datetime(TimeUnit::Milliseconds, None),
        )?,
        ints(
            "ts_us_utc",
            &[
                Some(1770129015123456),
                Some(0),
                None,
                Some(-62135596800000000),
                Some(1),
            ],
            DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
        )?,
        ints(
            "ts_ns_tokyo",
            &[
                Some(1770129015123456789),
                Some(-1),
                None,
                Some(4102444800000000000),
                Some(0),
            ],
            DataType::Datetime(TimeUnit::Nanoseconds, tokyo),
        )?,
        ints(
            "dur_ms",
            &[Some(0), Some(-1000), None, Some(86400000), Some(i64::MAX)],
            DataType::Duration(TimeUnit::Milliseconds),
        )?,
        ints(
            "dur_ns",
            &[Some(90000000000), Some(-5), None, Some(1), Some(0)],
            DataType::Duration(TimeUnit::Nanoseconds),
        )?,
        ints(
            "time_ns",
            &[
                Some(0),
                Some(86399999999999),
                None,
                Some(52215123456789),
                Some(1),
            ],
            DataType::Time,
        )?,
        Series::new(
            "dec".into(),
            &[Some(12345i128), Some(-9999999999), None, Some(0), Some(1)],
        )
        .into_decimal(10, 2)?,
        Series::new(
            "big_dec".into(),
            &[
                Some(10i128.pow(38) - 1),
                Some(-1),
                None,
                Some(0),
                Some(1500000000),
            ],
        )
        .into_decimal(38, 9)?,
        Series::new(
            "list_i64".into(),
            &[
                Some(Series::new("".into(), &[1i64, 2, 3])),
                Some(Series::new_empty("".into(), &DataType::Int64)),
                None,
                Some(Series::new("".into(), &[Some(i64::MIN), None])),
                Some(Series::new("".into(), &[0i64])),
            ],
        ),
        Series::new(
            "list_str".into(),
            &[
                Some(strs("", &[Some("a"), Some("b")])),
                None,
                Some(Series::new_empty("".into(), &DataType::String)),
                Some(strs("", &[None, Some("ü")])),
                Some(strs("", &[Some("x")])),
            ],
        ),
        {
            let x = Series::new("x".into(), &[Some(10i32), None, None, Some(-1), Some(0)]);
            let label = strs(
                "label",
                &[Some("BTC"), Some("only label"), None, None, Some("")],
            );
            let valid = Bitmap::from_iter([true, true, false, true, true]);
            StructChunked::from_series("point".into(), 5, [x, label].iter())?
                .with_outer_validity(Some(valid))
                .into_series()
        },
        strs(
            "cat",
            &[Some("buy"), Some("sell"), None, Some("buy"), Some("")],
        )
        .strict_cast(&DataType::from_categories(Categories::global()))?,
        Series::new(
            "fsl".into(),
            &[
                Some(Series::new("".into(), &[1i64, 2])),
                None,
                Some(Series::new("".into(), &[Some(i64::MAX), None])),
                Some(Series::new("".into(), &[0i64, 0])),
                Some(Series::new("".into(), &[-1i64, -2])),
            ],
        )
        .strict_cast(&DataType::Array(Box::new(DataType::Int64), 2))?,
        Series::new_null("nothing".into(), 5),
    ];
    Ok(DataFrame::new(
        5,
        columns.into_iter().map(Into::into).collect(),
    )?)
}

/// A canonical value: what the dump writes (numbers, decimals and temporals are strings).
enum J {
    Null,
    Bool(bool),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

/// The canonical dump of `df` (docs/cross-language.md): one line per column.
fn dump(df: &DataFrame) -> Result<String> {
    let mut out = format!(
        "{{\"format\":\"polarway-xlang/1\",\"rows\":{},\"columns\":[",
        df.height()
    );
    for (i, column) in df.columns().iter().enumerate() {
        let s = column.as_materialized_series();
        let line = J::Obj(vec![
            ("name".into(), J::Str(s.name().to_string())),
            ("type".into(), J::Str(type_name(s.dtype())?)),
            (
                "values".into(),
                J::Arr(values(s).with_context(|| format!("column {}", s.name()))?),
            ),
        ]);
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        write_json(&mut out, &line);
    }
    out.push_str("\n]}\n");
    Ok(out)
}

fn unit(u: &TimeUnit) -> &'static str {
    match u {
        TimeUnit::Milliseconds => "ms",
        TimeUnit::Microseconds => "us",
        TimeUnit::Nanoseconds => "ns",
    }
}

/// The canonical type name of a Polars dtype (the Arrow type it stands for).
fn type_name(dtype: &DataType) -> Result<String> {
    use DataType::*;
    Ok(match dtype {
        Int8 => "int8".into(),
        Int16 => "int16".into(),
        Int32 => "int32".into(),
        Int64 => "int64".into(),
        UInt8 => "uint8".into(),
        UInt16 => "uint16".into(),
        UInt32 => "uint32".into(),
        UInt64 => "uint64".into(),
        Float32 => "float32".into(),
        Float64 => "float64".into(),
        Boolean => "bool".into(),
        String => "string".into(),
        Binary => "binary".into(),
        Date => "date32".into(),
        Datetime(u, None) => format!("timestamp[{}]", unit(u)),
        Datetime(u, Some(tz)) => format!("timestamp[{}, {}]", unit(u), tz.as_str()),
        Duration(u) => format!("duration[{}]", unit(u)),
        Time => "time64[ns]".into(),
        Decimal(p, s) => format!("decimal128({p}, {s})"),
        List(inner) => format!("list<{}>", type_name(inner)?),
        Struct(fields) => {
            let parts: Result<Vec<_>> = fields
                .iter()
                .map(|f| Ok(format!("{}: {}", f.name(), type_name(f.dtype())?)))
                .collect();
            format!("struct<{}>", parts?.join(", "))
        }
        Categorical(..) | Enum(..) => "dictionary<string>".into(),
        Array(inner, size) => format!("fixed_size_list<{}>[{size}]", type_name(inner)?),
        Null => "null".into(),
        other => bail!("no canonical name for Polars type {other}"),
    })
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> J {
    v.map_or(J::Null, |v| J::Str(f(v)))
}

/// Shortest round-trip digits in scientific notation ("1e-1", "-1.5e0"); float32 widened to f64.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        (if v > 0.0 { "Infinity" } else { "-Infinity" }).into()
    } else {
        format!("{v:e}")
    }
}

/// An unscaled decimal with `scale` fraction digits, e.g. (-5, 2) -> "-0.05".
fn decimal(unscaled: i128, scale: usize) -> String {
    let mut digits = unscaled.unsigned_abs().to_string();
    if scale > 0 {
        if digits.len() <= scale {
            digits = "0".repeat(scale + 1 - digits.len()) + &digits;
        }
        digits.insert(digits.len() - scale, '.');
    }
    if unscaled < 0 {
        format!("-{digits}")
    } else {
        digits
    }
}

/// The canonical values of a column, one per row.
fn values(s: &Series) -> Result<Vec<J>> {
    use DataType::*;
    let ints = |p: &Series| -> Result<Vec<J>> {
        let show = |v: &dyn ToString| v.to_string();
        Ok(match p.dtype() {
            Int8 => p.i8()?.iter().map(|v| opt(v, |v| show(&v))).collect(),
            Int16 => p.i16()?.iter().map(|v| opt(v, |v| show(&v))).collect(),
            Int32 => p.i32()?.iter().map(|v| opt(v, |v| show(&v))).collect(),
            Int64 => p.i64()?.iter().map(|v| opt(v, |v| show(&v))).collect(),
            UInt8 => p.u8()?.iter().map(|v| opt(v, |v| show(&v))).collect(),
            UInt16 => p.u16()?.iter().map(|v| opt(v, |v| show(&v))).collect(),
            UInt32 => p.u32()?.iter().map(|v| opt(v, |v| show(&v))).collect(),
            UInt64 => p.u64()?.iter().map(|v| opt(v, |v| show(&v))).collect(),
            other => bail!("unexpected physical type {other}"),
        })
    };
    Ok(match s.dtype() {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => ints(s)?,
        // Temporal values are their stored integers: days, or ticks of the type's unit.
        Date | Datetime(..) | Duration(_) | Time => ints(&s.to_physical_repr())?,
        Float32 => s
            .f32()?
            .iter()
            .map(|v| opt(v, |v| float(v as f64)))
            .collect(),
        Float64 => s.f64()?.iter().map(|v| opt(v, float)).collect(),
        Boolean => s
            .bool()?
            .iter()
            .map(|v| v.map_or(J::Null, J::Bool))
            .collect(),
        String => s.str()?.iter().map(|v| opt(v, str::to_string)).collect(),
        Binary => s.binary()?.iter().map(|v| opt(v, hex::encode)).collect(),
        Decimal(_, scale) => s
            .decimal()?
            .physical()
            .iter()
            .map(|v| opt(v, |v| decimal(v, *scale)))
            .collect(),
        Categorical(..) | Enum(..) => values(&s.cast(&String)?)?,
        List(_) => {
            let ca = s.list()?;
            let mut out = Vec::with_capacity(s.len());
            for i in 0..ca.len() {
                out.push(match ca.get_as_series(i) {
                    None => J::Null,
                    // get_as_series gives the physical values (e.g. Int64 for datetimes).
                    Some(inner) => J::Arr(values(&unsafe {
                        inner.from_physical_unchecked(ca.inner_dtype())
                    }?)?),
                });
            }
            out
        }
        Array(..) => {
            let ca = s.array()?;
            let mut out = Vec::with_capacity(s.len());
            for i in 0..ca.len() {
                out.push(match ca.get_as_series(i) {
                    None => J::Null,
                    Some(inner) => J::Arr(values(&unsafe {
                        inner.from_physical_unchecked(ca.inner_dtype())
                    }?)?),
                });
            }
            out
        }
        Null => (0..s.len()).map(|_| J::Null).collect(),
        Struct(_) => {
            let ca = s.struct_()?;
            let fields: Vec<(std::string::String, Vec<J>)> = ca
                .fields_as_series()
                .iter()
                .map(|f| Ok((f.name().to_string(), values(f)?)))
                .collect::<Result<_>>()?;
            let mut columns: Vec<_> = fields
                .into_iter()
                .map(|(n, v)| (n, v.into_iter()))
                .collect();
            let nulls = s.is_null();
            (0..s.len())
                .map(|i| {
                    let row: Vec<_> = columns
                        .iter_mut()
                        .map(|(n, v)| (n.clone(), v.next().unwrap_or(J::Null)))
                        .collect();
                    if nulls.get(i) == Some(true) {
                        J::Null
                    } else {
                        J::Obj(row)
                    }
                })
                .collect()
        }
        other => bail!("no canonical values for Polars type {other}"),
    })
}

/// Compact JSON; strings escape `"`, `\`, and control characters (\b \f \n \r \t, else \u00xx).
fn write_json(out: &mut String, v: &J) {
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Str(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\u{8}' => out.push_str("\\b"),
                    '\u{c}' => out.push_str("\\f"),
                    c if (c as u32) < 0x20 => {
                        let _ = write!(out, "\\u{:04x}", c as u32);
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        J::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        J::Obj(entries) => {
            out.push('{');
            for (i, (k, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, &J::Str(k.clone()));
                out.push(':');
                write_json(out, item);
            }
            out.push('}');
        }
    }
}
