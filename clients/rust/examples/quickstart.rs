//! The user guide's Rust example, runnable: `cargo run -p polarway-client --example quickstart`.
//! Start a server first (`bash scripts/run-server.sh`); set POLARWAY_URL and POLARWAY_COLD_DIR
//! when it does not run on http://localhost:50052 with --data-dir ./data.

use polars::prelude::*;
use polarway::{DistributedClient, Result};

#[tokio::main]
async fn main() -> Result<()> {
    let url = std::env::var("POLARWAY_URL").unwrap_or_else(|_| "http://localhost:50052".into());
    let cold = std::env::var("POLARWAY_COLD_DIR").unwrap_or_else(|_| "./data/cold".into());

    // Connect to server
    let client = DistributedClient::connect(url).await?;

    // Health check
    client.health_check().await?;

    // Store data (with a timestamp, which the query below filters on)
    let mut df = df! {
        "symbol" => &["BTC", "ETH", "SOL"],
        "price" => &[50000, 3000, 100],
    }?;
    let ts = Series::new("timestamp".into(), [1_770_076_800_000_000i64; 3])
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))?;
    df.with_column(ts.into_column())?;

    client.store("trades_20260203", &df).await?;

    // Load data
    let loaded = client.load("trades_20260203").await?;
    println!("{:?}", loaded);

    // Execute query
    let result = client
        .query(&format!(
            "SELECT symbol, AVG(price) as avg_price
             FROM parquet_scan('{cold}/trades_*.parquet')
             WHERE timestamp > '2026-02-01'
             GROUP BY symbol"
        ))
        .await?;

    println!("{:?}", result);

    // Parallel loads
    client.store("quotes_20260203", &df).await?;
    client.store("orders_20260203", &df).await?;
    let (trades, quotes, orders) = tokio::try_join!(
        client.load("trades_20260203"),
        client.load("quotes_20260203"),
        client.load("orders_20260203")
    )?;
    println!(
        "{} {} {} rows",
        trades.height(),
        quotes.height(),
        orders.height()
    );

    Ok(())
}
