//! `keyhole_bucket(keen.timestamp)`: the index of the interval bucket an event falls in, by binary search
//! over bucket boundaries computed beforehand in the query's time zone (so DST days of 23 or 25 hours are
//! exact). Null outside the timeframe.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int32Array, TimestampMillisecondArray};
use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::Expr;

#[derive(Debug, PartialEq, Eq, Hash)]
struct BucketOf {
    boundaries: Vec<i64>,
    signature: Signature,
}

impl ScalarUDFImpl for BucketOf {
    fn name(&self) -> &'static str {
        "keyhole_bucket"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let times = input
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .ok_or_else(|| {
                DataFusionError::Internal("keyhole_bucket takes millisecond timestamps".into())
            })?;
        let last = self.boundaries.len().saturating_sub(1);
        let buckets: Int32Array = times
            .iter()
            .map(|time| {
                let time = time?;
                let index = self
                    .boundaries
                    .partition_point(|boundary| *boundary <= time);
                (index >= 1 && index <= last).then(|| (index - 1) as i32)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(buckets) as ArrayRef))
    }
}

/// The bucket index of `timestamp` for these sorted boundaries (`n + 1` boundaries make `n` buckets).
pub(crate) fn bucket_of(boundaries: Vec<i64>, timestamp: Expr) -> Expr {
    let signature = Signature::any(1, Volatility::Immutable);
    ScalarUDF::from(BucketOf {
        boundaries,
        signature,
    })
    .call(vec![timestamp])
}
