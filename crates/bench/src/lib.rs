//! pushbench's parts that the end-to-end tests use too: the `promise` checker
//! (a short run of it is in the suite), and the report it prints. The load
//! scenarios live with the binary (`main.rs`).

pub mod promise;
pub mod report;
pub mod sys;
