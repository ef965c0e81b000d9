//! Prints the query API's OpenAPI 3.1 document: `cargo run -p query --example openapi`.

fn main() {
    let document = query::openapi();
    println!("{}", serde_json::to_string_pretty(&document).expect("the document serialises"));
}
