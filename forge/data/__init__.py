"""Market data: Binance kline loading, validation, gap reports, embedded sample."""
