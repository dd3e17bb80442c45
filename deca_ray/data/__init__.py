"""Data preparation: load records, split off a held-out set, partition across clients, tokenise."""
