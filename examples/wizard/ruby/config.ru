run ->(env) { [200, {}, ["hello from ruby\n"]] }
