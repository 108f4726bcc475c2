require("http").createServer((q,s)=>s.end("hi\n")).listen(process.env.PORT||3000);
