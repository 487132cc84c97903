"""The Python snippets of the user guide, verbatim and in order.
test_seed.py runs each (adapted only in host and port) and checks this copy against the guide."""

CLIENT_USAGE = '''\
from polarway import DistributedClient

# Connect to server
client = DistributedClient(
    host="polarway-server.example.com",
    port=50052,
    timeout=30
)

# Health check
health = client.health_check()
print(f"Server status: {health}")

# Store data
import polars as pl

df = pl.DataFrame({
    "symbol": ["BTC", "ETH", "SOL"],
    "price": [50000, 3000, 100]
})

client.store("trades_20260203", df)

# Load data
loaded = client.load("trades_20260203")
print(loaded)

# Execute query
result = client.query("""
    SELECT symbol, AVG(price) as avg_price
    FROM parquet_scan('/data/cold/trades_*.parquet')
    WHERE timestamp > '2026-02-01'
    GROUP BY symbol
""")

print(result)
'''

PARALLEL_LOADS = """\
import asyncio
from polarway import AsyncDistributedClient

async def load_all():
    client = AsyncDistributedClient(host="localhost", port=50052)
    
    # Parallel loads
    results = await asyncio.gather(
        client.load("trades_20260203"),
        client.load("quotes_20260203"),
        client.load("orders_20260203")
    )
    
    return results

results = asyncio.run(load_all())
"""

BATCH_STORE = """\
# Batch store (single RPC)
client.store_batch({
    "trades_20260203": trades_df,
    "quotes_20260203": quotes_df,
    "orders_20260203": orders_df
})
"""

STREAMING = """\
# Stream large result in chunks
for batch in client.load_stream("huge_dataset"):
    process_batch(batch)
    # Memory freed after each iteration
"""

TLS_CLIENT = """\
import grpc

credentials = grpc.ssl_channel_credentials(
    root_certificates=open('/certs/ca.crt', 'rb').read(),
    private_key=open('/certs/client.key', 'rb').read(),
    certificate_chain=open('/certs/client.crt', 'rb').read()
)

client = DistributedClient(
    host="polarway-server.example.com",
    port=50052,
    credentials=credentials
)
"""

TOKEN_CLIENT = """\
client = DistributedClient(
    host="polarway-server.example.com",
    port=50052,
    auth_token="your-secret-token"
)
"""

HEALTH_CHECK = """\
# Check server health
health = client.health_check()
print(health)  # "OK" or error
"""

SLOW_QUERIES = """\
# Enable query timing
client = DistributedClient(host="localhost", port=50052, timeout=300)

# Check cache stats
stats = client.cache_stats()
print(f"Hit rate: {stats['hit_rate']:.1%}")
"""

ALL = [CLIENT_USAGE, PARALLEL_LOADS, BATCH_STORE, STREAMING, TLS_CLIENT, TOKEN_CLIENT, HEALTH_CHECK, SLOW_QUERIES]
