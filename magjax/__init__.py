magjax
