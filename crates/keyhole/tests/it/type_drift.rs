//! One property written as a number, string, boolean, object, list and null across events: every value
//! comes back through the storage read interface with its own type, before and after a flush.

use arrow::array::{Array, AsArray, BooleanArray, Float64Array, ListArray};
use arrow::datatypes::Float64Type;
use serde_json::json;

use crate::support::{InProcessServer, client, send, string_values};

#[tokio::test(flavor = "multi_thread")]
async fn drifting_property_keeps_every_value_and_type() {
    let server = InProcessServer::start().await;
    let values = [
        json!(7),
        json!("seven"),
        json!(false),
        json!({"deep": "x"}),
        json!([1.5, 2.5]),
        json!(["p", "q"]),
        json!(null),
    ];
    for (index, value) in values.iter().enumerate() {
        let body = json!({"amount": value, "order": index, "keen": {"timestamp": format!("2024-06-0{}T00:00:00Z", index + 1)}});
        let answer = send(
            client()
                .post(server.project_url("/events/drift"))
                .header("Authorization", &server.project.write)
                .json(&body),
        )
        .await;
        assert_eq!(answer.0, 201);
        if index == 3 {
            server.storage.flush().await.unwrap();
        }
    }
    let scan = server.scan("drift").await;
    let all = arrow::compute::concat_batches(&scan.schema, &scan.batches).unwrap();
    assert_eq!(all.num_rows(), 7);
    let order = all
        .column_by_name("order#num")
        .unwrap()
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    let row_of = |wanted: usize| {
        (0..all.num_rows())
            .find(|row| order.value(*row) as usize == wanted)
            .unwrap()
    };
    let numbers = all
        .column_by_name("amount#num")
        .unwrap()
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert_eq!(numbers.value(row_of(0)), 7.0);
    assert_eq!(string_values(&scan, "amount#str"), ["seven"]);
    let booleans = all
        .column_by_name("amount#bool")
        .unwrap()
        .as_any()
        .downcast_ref::<BooleanArray>()
        .unwrap();
    assert!(!booleans.value(row_of(2)) && booleans.is_valid(row_of(2)));
    assert_eq!(string_values(&scan, "amount.deep#str"), ["x"]);
    let number_lists = all
        .column_by_name("amount#list_num")
        .unwrap()
        .as_any()
        .downcast_ref::<ListArray>()
        .unwrap();
    assert_eq!(
        number_lists
            .value(row_of(4))
            .as_primitive::<Float64Type>()
            .values()
            .to_vec(),
        [1.5, 2.5]
    );
    let string_lists = all
        .column_by_name("amount#list_str")
        .unwrap()
        .as_any()
        .downcast_ref::<ListArray>()
        .unwrap();
    let list = string_lists.value(row_of(5));
    let strings: Vec<&str> = list.as_string::<i32>().iter().flatten().collect();
    assert_eq!(strings, ["p", "q"]);
    let nulls = all
        .column_by_name("amount#null")
        .unwrap()
        .as_any()
        .downcast_ref::<BooleanArray>()
        .unwrap();
    assert!(nulls.value(row_of(6)));
    let schema = server
        .storage
        .collection_schema(&keyhole_storage::CollectionId {
            project: server.project.id.clone(),
            collection: "drift".into(),
        })
        .unwrap();
    let mut kinds: Vec<&str> = schema.properties["amount"]
        .kinds
        .iter()
        .map(|kind| kind.suffix())
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["bool", "list_num", "list_str", "null", "num", "str"]
    );
}
