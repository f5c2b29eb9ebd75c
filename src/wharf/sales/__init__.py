"""Sales (seed 004): daily files of transactions in, "how often was product X sold" out."""
