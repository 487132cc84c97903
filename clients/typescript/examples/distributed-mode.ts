// The user guide's TypeScript example as written there, with one line added:
// the stored frame gets the `timestamp` column that the guide's query filters on (without it
// DuckDB rejects the query: the guide's frame has no such column). Run it against a server
// started with `--data-dir /data` on localhost:50052:
//   npm run build && npx tsx examples/distributed-mode.ts
import { PolarwayClient } from '@polarway/client';

// Connect to server
const client = new PolarwayClient({
  host: 'localhost',
  port: 50052,
  timeout: 30000
});

// Health check
const health = await client.healthCheck();
console.log(`Server status: ${health}`);

// Store data
await client.store('trades_20260203', {
  symbol: ['BTC', 'ETH', 'SOL'],
  price: [50000, 3000, 100],
  timestamp: [new Date('2026-02-03T09:00:00Z'), new Date('2026-02-03T10:00:00Z'), new Date('2026-02-03T11:00:00Z')] // added: the query below filters on it
});

// Load data
const loaded = await client.load('trades_20260203');
console.log(loaded);

// Execute query
const result = await client.query(`
  SELECT symbol, AVG(price) as avg_price
  FROM parquet_scan('/data/cold/trades_*.parquet')
  WHERE timestamp > '2026-02-01'
  GROUP BY symbol
`);

console.log(result);
