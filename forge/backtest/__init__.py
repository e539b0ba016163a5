"""forge.backtest"""
