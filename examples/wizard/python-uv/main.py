print("hello from uv")
