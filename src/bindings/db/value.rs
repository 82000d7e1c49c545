//! Script values as query parameters, and result rows as script maps, one mapper per driver:
//! a row keeps its types (timestamps, numerics and UUIDs as text, bytes as blobs, NULL as `()`).

use rhai::{Array, Blob, Dynamic, Map};
use sqlx::mysql::MySqlRow;
use sqlx::postgres::{PgRow, PgTypeKind};
use sqlx::sqlite::SqliteRow;
use sqlx::types::chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sqlx::{Column, Row, TypeInfo, ValueRef};

use super::error::DbError;
use crate::engine::convert::{from_json, to_json};
use crate::secret::Secret;

/// One query parameter. A NULL is sent as text: servers that cannot infer its type from the
/// SQL need a cast there (`$1::int`).
#[derive(Debug, Clone)]
pub enum Param {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    Json(serde_json::Value),
}

impl Param {
    /// A script value as a parameter; `index` counts from 1 for messages.
    pub fn from_dynamic(index: usize, value: &Dynamic) -> Result<Self, DbError> {
        if value.is_unit() {
            return Ok(Param::Null);
        }
        if let Ok(b) = value.as_bool() {
            return Ok(Param::Bool(b));
        }
        if let Ok(i) = value.as_int() {
            return Ok(Param::Int(i));
        }
        if let Ok(f) = value.as_float() {
            return Ok(Param::Float(f));
        }
        if value.is_string() || value.is_char() {
            return Ok(Param::Text(value.to_string()));
        }
        if let Some(secret) = value.clone().try_cast::<Secret>() {
            return Ok(Param::Text(secret.expose().to_owned()));
        }
        if let Some(blob) = value.clone().try_cast::<Blob>() {
            return Ok(Param::Bytes(blob));
        }
        if value.is_map() || value.is_array() {
            return Ok(Param::Json(to_json(value)));
        }
        Err(DbError::BadParameter {
            index,
            reason: format!("a {} cannot be sent to a database", value.type_name()),
        })
    }

    /// All parameters of a call.
    pub fn all(params: &Array) -> Result<Vec<Param>, DbError> {
        params
            .iter()
            .enumerate()
            .map(|(i, value)| Param::from_dynamic(i + 1, value))
            .collect()
    }
}

/// Builds a query from runtime SQL with its parameters bound, for any driver.
macro_rules! prepared {
    ($sql:expr, $params:expr) => {{
        let mut query = sqlx::query(sqlx::AssertSqlSafe($sql));
        for param in $params {
            query = match param {
                $crate::bindings::db::value::Param::Null => query.bind(None::<String>),
                $crate::bindings::db::value::Param::Bool(v) => query.bind(v),
                $crate::bindings::db::value::Param::Int(v) => query.bind(v),
                $crate::bindings::db::value::Param::Float(v) => query.bind(v),
                $crate::bindings::db::value::Param::Text(v) => query.bind(v),
                $crate::bindings::db::value::Param::Bytes(v) => query.bind(v),
                $crate::bindings::db::value::Param::Json(v) => query.bind(sqlx::types::Json(v)),
            };
        }
        query
    }};
}
pub(crate) use prepared;

/// A result row as a map from column name to value.
pub trait RowMap {
    fn to_map(&self) -> Result<Map, DbError>;
}

fn unreadable(column: &str, type_name: &str, source: sqlx::Error) -> DbError {
    DbError::Unreadable {
        column: column.to_owned(),
        type_name: type_name.to_owned(),
        source: source.into(),
    }
}

/// Maps every column with `value`, which is asked only for non-NULL values.
fn map_row<R: Row>(
    row: &R,
    value: impl Fn(&R, usize, &str) -> Result<Dynamic, sqlx::Error>,
) -> Result<Map, DbError>
where
    usize: sqlx::ColumnIndex<R>,
{
    let mut map = Map::new();
    for (index, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let type_name = column.type_info().name().to_owned();
        let raw = row
            .try_get_raw(index)
            .map_err(|err| unreadable(name, &type_name, err))?;
        let cell = if raw.is_null() {
            Dynamic::UNIT
        } else {
            value(row, index, &type_name).map_err(|err| unreadable(name, &type_name, err))?
        };
        map.insert(name.into(), cell);
    }
    Ok(map)
}

fn text(value: impl ToString) -> Dynamic {
    Dynamic::from(value.to_string())
}

fn timestamp(value: DateTime<Utc>) -> Dynamic {
    text(value.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

fn naive(value: NaiveDateTime) -> Dynamic {
    text(value.format("%Y-%m-%dT%H:%M:%S%.f"))
}

impl RowMap for PgRow {
    fn to_map(&self) -> Result<Map, DbError> {
        map_row(self, pg_value)
    }
}

fn pg_value(row: &PgRow, i: usize, type_name: &str) -> Result<Dynamic, sqlx::Error> {
    Ok(match type_name {
        "BOOL" => row.try_get::<bool, _>(i)?.into(),
        "INT2" => i64::from(row.try_get::<i16, _>(i)?).into(),
        "INT4" => i64::from(row.try_get::<i32, _>(i)?).into(),
        "INT8" => row.try_get::<i64, _>(i)?.into(),
        "OID" => i64::from(row.try_get::<sqlx::postgres::types::Oid, _>(i)?.0).into(),
        "FLOAT4" => f64::from(row.try_get::<f32, _>(i)?).into(),
        "FLOAT8" => row.try_get::<f64, _>(i)?.into(),
        "NUMERIC" => text(row.try_get::<sqlx::types::Decimal, _>(i)?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" | "UNKNOWN" => {
            row.try_get_unchecked::<String, _>(i)?.into()
        }
        "CHAR" => text(char::from(row.try_get::<i8, _>(i)? as u8)),
        "JSON" | "JSONB" => from_json(&row.try_get::<serde_json::Value, _>(i)?),
        "TIMESTAMPTZ" => timestamp(row.try_get::<DateTime<Utc>, _>(i)?),
        "TIMESTAMP" => naive(row.try_get::<NaiveDateTime, _>(i)?),
        "DATE" => text(row.try_get::<NaiveDate, _>(i)?),
        "TIME" => text(row.try_get::<NaiveTime, _>(i)?),
        "UUID" => text(row.try_get::<sqlx::types::Uuid, _>(i)?),
        "BYTEA" => Dynamic::from_blob(row.try_get::<Vec<u8>, _>(i)?),
        "INTERVAL" => interval(row.try_get::<sqlx::postgres::types::PgInterval, _>(i)?),
        "VOID" => Dynamic::UNIT,
        "TEXT[]" | "VARCHAR[]" | "NAME[]" => list(row.try_get::<Vec<String>, _>(i)?),
        "INT2[]" => list(row.try_get::<Vec<i16>, _>(i)?.into_iter().map(i64::from)),
        "INT4[]" => list(row.try_get::<Vec<i32>, _>(i)?.into_iter().map(i64::from)),
        "INT8[]" => list(row.try_get::<Vec<i64>, _>(i)?),
        "FLOAT8[]" => list(row.try_get::<Vec<f64>, _>(i)?),
        "BOOL[]" => list(row.try_get::<Vec<bool>, _>(i)?),
        _ => pg_other(row, i)?,
    })
}

/// Enumerations arrive as their label; other types need a cast in the SQL.
fn pg_other(row: &PgRow, i: usize) -> Result<Dynamic, sqlx::Error> {
    let info = row.columns()[i].type_info();
    match info.kind() {
        PgTypeKind::Enum(_) => Ok(row.try_get_unchecked::<String, _>(i)?.into()),
        _ => Err(sqlx::Error::Decode(
            format!("no mapping for the PostgreSQL type {}", info.name()).into(),
        )),
    }
}

fn list<T: Into<Dynamic>>(items: impl IntoIterator<Item = T>) -> Dynamic {
    items.into_iter().map(Into::into).collect::<Array>().into()
}

/// An interval as PostgreSQL writes it in its default style (`1 year 2 mons 3 days 04:05:06`).
fn interval(value: sqlx::postgres::types::PgInterval) -> Dynamic {
    let unit =
        |n: i64, one: &str, many: &str| format!("{n} {}", if n.abs() == 1 { one } else { many });
    let mut parts = Vec::new();
    let (years, months) = (value.months / 12, value.months % 12);
    if years != 0 {
        parts.push(unit(years.into(), "year", "years"));
    }
    if months != 0 {
        parts.push(unit(months.into(), "mon", "mons"));
    }
    if value.days != 0 {
        parts.push(unit(value.days.into(), "day", "days"));
    }
    let micros = value.microseconds;
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 { "-" } else { "" };
        let total = micros.unsigned_abs();
        let (secs, frac) = (total / 1_000_000, total % 1_000_000);
        let clock = format!(
            "{sign}{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        parts.push(match frac {
            0 => clock,
            _ => format!("{clock}.{frac:06}"),
        });
    }
    text(parts.join(" "))
}

impl RowMap for MySqlRow {
    fn to_map(&self) -> Result<Map, DbError> {
        map_row(self, mysql_value)
    }
}

fn mysql_value(row: &MySqlRow, i: usize, type_name: &str) -> Result<Dynamic, sqlx::Error> {
    Ok(match type_name {
        "BOOLEAN" => row.try_get_unchecked::<bool, _>(i)?.into(),
        "TINYINT" => i64::from(row.try_get_unchecked::<i8, _>(i)?).into(),
        "SMALLINT" => i64::from(row.try_get_unchecked::<i16, _>(i)?).into(),
        "INT" | "MEDIUMINT" => i64::from(row.try_get_unchecked::<i32, _>(i)?).into(),
        "BIGINT" => row.try_get_unchecked::<i64, _>(i)?.into(),
        "TINYINT UNSIGNED" => i64::from(row.try_get_unchecked::<u8, _>(i)?).into(),
        "SMALLINT UNSIGNED" => i64::from(row.try_get_unchecked::<u16, _>(i)?).into(),
        "INT UNSIGNED" | "MEDIUMINT UNSIGNED" => {
            i64::from(row.try_get_unchecked::<u32, _>(i)?).into()
        }
        "BIGINT UNSIGNED" => {
            let value = row.try_get_unchecked::<u64, _>(i)?;
            // Past i64::MAX the exact value survives only as text.
            i64::try_from(value).map_or_else(|_| text(value), Dynamic::from)
        }
        "FLOAT" => f64::from(row.try_get_unchecked::<f32, _>(i)?).into(),
        "DOUBLE" => row.try_get_unchecked::<f64, _>(i)?.into(),
        "DECIMAL" => text(row.try_get_unchecked::<sqlx::types::Decimal, _>(i)?),
        "JSON" => from_json(&row.try_get_unchecked::<serde_json::Value, _>(i)?),
        "TIMESTAMP" => timestamp(row.try_get_unchecked::<DateTime<Utc>, _>(i)?),
        "DATETIME" => naive(row.try_get_unchecked::<NaiveDateTime, _>(i)?),
        "DATE" => text(row.try_get_unchecked::<NaiveDate, _>(i)?),
        "TIME" => text(row.try_get_unchecked::<NaiveTime, _>(i)?),
        "YEAR" => i64::from(row.try_get_unchecked::<u16, _>(i)?).into(),
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB"
            if !binary_collation(row, i) =>
        {
            row.try_get_unchecked::<String, _>(i)?.into()
        }
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BIT"
        | "GEOMETRY" | "VECTOR" => Dynamic::from_blob(row.try_get_unchecked::<Vec<u8>, _>(i)?),
        "NULL" => Dynamic::UNIT,
        _ => row.try_get_unchecked::<String, _>(i)?.into(),
    })
}

/// Whether a column holds bytes rather than text. sqlx names a text column with a binary
/// collation (`utf8mb4_bin`, which MariaDB uses for JSON) as BLOB or VARBINARY, because the
/// server flags it BINARY, and keeps the collation itself private; its Debug form shows it,
/// and only collation 63 (`binary`) means bytes.
fn binary_collation(row: &MySqlRow, i: usize) -> bool {
    let info = format!("{:?}", row.columns()[i].type_info());
    !info.contains("collation: Collation(") || info.contains("collation: Collation(63)")
}

impl RowMap for SqliteRow {
    fn to_map(&self) -> Result<Map, DbError> {
        map_row(self, sqlite_value)
    }
}

/// SQLite types each value, not each column: the value's own storage class decides, except
/// that a column declared BOOLEAN reads as a boolean.
fn sqlite_value(row: &SqliteRow, i: usize, declared: &str) -> Result<Dynamic, sqlx::Error> {
    let stored = row.try_get_raw(i)?.type_info().name().to_owned();
    Ok(match (declared, stored.as_str()) {
        ("BOOLEAN", "INTEGER") => row.try_get_unchecked::<bool, _>(i)?.into(),
        (_, "INTEGER") => row.try_get_unchecked::<i64, _>(i)?.into(),
        (_, "REAL") => row.try_get_unchecked::<f64, _>(i)?.into(),
        (_, "BLOB") => Dynamic::from_blob(row.try_get_unchecked::<Vec<u8>, _>(i)?),
        _ => row.try_get_unchecked::<String, _>(i)?.into(),
    })
}

/// Every row as a map.
pub fn rows<R: RowMap>(rows: &[R]) -> Result<Array, DbError> {
    rows.iter()
        .map(|row| row.to_map().map(Dynamic::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_values_become_parameters_of_their_own_type() {
        let map: Map = [("a".into(), Dynamic::from(1_i64))].into_iter().collect();
        let params = Param::all(&vec![
            Dynamic::UNIT,
            true.into(),
            3_i64.into(),
            1.5_f64.into(),
            "x".into(),
            map.into(),
        ])
        .unwrap();
        assert!(matches!(params[0], Param::Null));
        assert!(matches!(params[1], Param::Bool(true)));
        assert!(matches!(params[2], Param::Int(3)));
        assert!(matches!(params[4], Param::Text(ref s) if s == "x"));
        assert!(matches!(params[5], Param::Json(ref v) if v["a"] == 1));
    }

    #[test]
    fn intervals_read_as_postgres_writes_them() {
        let value = sqlx::postgres::types::PgInterval {
            months: 14,
            days: 1,
            microseconds: 3_723_500_000,
        };
        assert_eq!(
            interval(value).to_string(),
            "1 year 2 mons 1 day 01:02:03.500000"
        );
    }
}
