// placeholder: the browser client (replaced by the real one)
