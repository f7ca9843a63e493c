//! SQL on the databases granted in the sidecar (`[grants] databases`).
//! Parameters are `$1, $2, …`; values convert from Rust with `.into()` and
//! back with [`Row::get`].

use crate::bindings::gatehouse::plugin::sql as wit;
pub use wit::{Error, Statement, Value};

/// An open database.
pub struct Db(wit::Connection);

impl Db {
    /// Opens `database` (`main` is always there).
    pub fn open(database: &str) -> Result<Db, Error> {
        wit::Connection::open(database).map(Db)
    }

    /// Runs a query and returns its rows.
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, Error> {
        let rows = self.0.query(sql, params)?;
        Ok(rows.rows.into_iter().map(Row).collect())
    }

    /// The first row of a query, if any.
    pub fn query_one(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, Error> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs a statement and returns the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, Error> {
        self.0.execute(sql, params)
    }

    /// Runs statements in one transaction: all or nothing.
    pub fn batch(&self, statements: &[(&str, Vec<Value>)]) -> Result<Vec<u64>, Error> {
        let statements: Vec<Statement> = statements
            .iter()
            .map(|(sql, params)| Statement {
                sql: (*sql).to_owned(),
                params: params.clone(),
            })
            .collect();
        self.0.batch(&statements)
    }
}

/// One row of a result.
pub struct Row(Vec<Value>);

impl Row {
    /// Column `index` as a Rust value (`i64`, `f64`, `String`, `Vec<u8>`,
    /// `bool`, or `Option` of one of them for a nullable column).
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T, crate::Error> {
        let value = self.0.get(index).ok_or_else(|| {
            crate::Error::Type(format!(
                "the row has {} columns, not {}",
                self.0.len(),
                index + 1
            ))
        })?;
        T::from_value(value)
            .ok_or_else(|| crate::Error::Type(format!("column {index} is {value:?}")))
    }

    /// The raw values.
    pub fn values(&self) -> &[Value] {
        &self.0
    }
}

/// A Rust type a SQL value converts into.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).map(|i| i != 0)
    }
}

impl FromValue for f64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Real(r) => Some(*r),
            Value::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(t) => Some(t.clone()),
            _ => None,
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Integer(v.into())
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}
